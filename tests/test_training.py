"""The trainer on a tiny generated dataset: learning, run folder, resume, two phases, configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from typer.testing import CliRunner

from conftest import LEARNING_RUN, assert_names, cli_error, fails_with, tiny_config
from ferlab.cli.main import app
from ferlab.data.stats import balanced_class_weights
from ferlab.errors import FerlabError
from ferlab.models.bundle import load_bundle
from ferlab.training.config import build_config, load_config
from ferlab.training.data import load_training_data, split_tensors
from ferlab.training.entry import resume, train
from ferlab.training.trainer import Trainer, TrainingInterrupted


def test_tiny_run_learns_and_writes_a_complete_run_folder(blob_data: Path, tmp_path: Path) -> None:
    config = build_config(
        {"name": "tiny"}, tiny_config(blob_data, LEARNING_RUN, **{"augment.policy": "none", "train.mixup_alpha": 0})
    )
    run_dir, metrics = train(config, tmp_path)
    for name in (
        "config.yaml",
        "summary.txt",
        "history.json",
        "curves.png",
        "last.pt",
        "best.pt",
        "metrics.json",
        "model.pt",
        "train.log",
    ):
        assert (run_dir / name).is_file(), name
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history) == 4 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert metrics["val"]["accuracy"] > 0.6  # chance is 0.4 (the majority class)
    assert "Total params:" in (run_dir / "summary.txt").read_text()
    assert len((run_dir / "train.log").read_text().splitlines()) == 4
    bundle = load_bundle(run_dir)
    assert bundle.record.classes == ("angry", "happy", "sad") and bundle.record.input_size == 24
    again_dir, again = train(config, tmp_path)  # the same config: the finished run, untouched
    assert again_dir == run_dir and again == metrics
    assert len((run_dir / "train.log").read_text().splitlines()) == 4
    with fails_with(FerlabError, "another config", "--resume"):
        train(build_config({"name": "tiny"}, tiny_config(blob_data, LEARNING_RUN, **{"train.lr": 0.5})), tmp_path)
    for checkpoint in ("last.pt", "best.pt"):  # deleted to save disk: the run is still finished, and kept
        (run_dir / checkpoint).unlink()
    model_bytes = (run_dir / "model.pt").read_bytes()
    assert train(config, tmp_path) == (run_dir, metrics)
    with fails_with(FerlabError, "another config", "--resume"):
        train(build_config({"name": "tiny"}, tiny_config(blob_data, LEARNING_RUN, **{"train.lr": 0.5})), tmp_path)
    assert (run_dir / "model.pt").read_bytes() == model_bytes


def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(
    blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = tiny_config(blob_data, LEARNING_RUN, **{"train.scheduler": "cosine", "train.warmup_epochs": 1})
    full_dir, full_metrics = train(build_config({"name": "full"}, overrides), tmp_path)

    original = Trainer._run_epoch

    def run_two_then_die(self: Trainer, phase: object) -> None:
        if len(self.state.history) == 2:
            raise RuntimeError("simulated kill")
        original(self, phase)  # type: ignore[arg-type]

    monkeypatch.setattr(Trainer, "_run_epoch", run_two_then_die)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(build_config({"name": "killed"}, overrides), tmp_path)
    assert not (tmp_path / "killed" / "model.pt").exists()
    monkeypatch.setattr(Trainer, "_run_epoch", original)
    _, resumed_metrics = resume(tmp_path / "killed")

    full, resumed = load_bundle(full_dir).model.state_dict(), load_bundle(tmp_path / "killed").model.state_dict()
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=0, msg=key)
    assert resumed_metrics["val"] == full_metrics["val"]
    history = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]


def test_two_phase_transfer_freezes_then_fine_tunes_the_top(blob_data: Path, tmp_path: Path) -> None:
    overrides = tiny_config(
        blob_data,
        LEARNING_RUN,
        **{
            "train.epochs": 2,
            "finetune.enabled": "true",
            "finetune.epochs": 2,
            "finetune.unfreeze_top": 2,
            "finetune.lr": 0.001,
            "augment.policy": "none",
            "model.name": "mini_xception",
            "model.params": "{input_size: 32}",
            "train.monitor": "val_loss",
        },
    )
    trainer = Trainer(build_config({"name": "two-phase"}, overrides), tmp_path / "two-phase")
    trainer.write_run_header()  # prepares: seeds, data, model
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    layers = trainer.model.backbone_layers()
    trainer.fit()
    final = trainer.model.state_dict()
    history = json.loads((tmp_path / "two-phase" / "history.json").read_text())
    assert [h["phase"] for h in history] == ["head", "head", "finetune", "finetune"]
    assert history[2]["lr"] == pytest.approx(0.001)
    bottom = layers[0][0]
    top = next(n for n, m in reversed(layers[-2:]) if not isinstance(m, torch.nn.BatchNorm2d))
    assert torch.equal(final[f"{bottom}.weight"], initial[f"{bottom}.weight"])  # never unfrozen
    assert not torch.equal(final[f"{top}.weight"], initial[f"{top}.weight"])  # fine-tuned in phase 2
    norms = [n for n, m in trainer.model.backbone.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    for name in norms:  # batch norm stays frozen, statistics included (finetune.freeze_batchnorm)
        for suffix in ("weight", "running_mean"):
            assert torch.equal(final[f"backbone.{name}.{suffix}"], initial[f"backbone.{name}.{suffix}"]), name


def test_ctrl_c_leaves_a_resumable_run(blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = Trainer.train_epoch

    def interrupt_second(self: Trainer, seed: tuple[int, ...]) -> dict[str, float]:
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, seed)

    monkeypatch.setattr(Trainer, "train_epoch", interrupt_second)
    with fails_with(TrainingInterrupted, f"ferlab train --resume {tmp_path / 'ctrl-c'}"):  # the command to run
        train(build_config({"name": "ctrl-c"}, tiny_config(blob_data, LEARNING_RUN)), tmp_path)
    saved = torch.load(tmp_path / "ctrl-c" / "last.pt", weights_only=True)
    assert saved["state"]["epoch_in_phase"] == 1


def test_class_weights_match_sklearn_and_handle_absent_classes() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2])
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=labels)
    np.testing.assert_allclose(balanced_class_weights(labels, 3), expected)
    np.testing.assert_allclose(balanced_class_weights(labels, 4)[3], 0.0)


def test_vote_targets_are_the_ferplus_distribution(tmp_path: Path) -> None:
    from conftest import write_ferplus_folder
    from ferlab.data.loader import load_dataset

    dataset = load_dataset(write_ferplus_folder(tmp_path / "ferplus"))
    soft = split_tensors(dataset, "train", soft=True).targets
    hard = split_tensors(dataset, "train", soft=False).targets
    torch.testing.assert_close(soft[1, :3], torch.tensor([0.0, 0.8, 0.2]))
    assert torch.equal(hard[1], torch.eye(8)[1])
    config = build_config({"name": "x"}, [f"data.path={tmp_path}", "train.targets=votes"])
    assert config.train.targets == "votes"


def test_votes_on_a_dataset_without_votes_is_a_clear_error(blob_data: Path, tmp_path: Path) -> None:
    config = build_config({"name": "v"}, tiny_config(blob_data, LEARNING_RUN, **{"train.targets": "votes"}))
    with pytest.raises(FerlabError, match="needs FER\\+ votes"):
        train(config, tmp_path)


def test_val_clean_keeps_only_the_listed_validation_images(
    blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = load_training_data(build_config({"name": "all"}, tiny_config(blob_data, LEARNING_RUN)), 24, 1)
    val_sources = sorted(everything.split("val").sources)
    clean = tmp_path / "val-clean.txt"
    clean.write_text("# ferlab data audit: the val images ...\n" + "\n".join(val_sources[::2]) + "\n")

    config = build_config({"name": "clean"}, tiny_config(blob_data, LEARNING_RUN, **{"data.val_clean": str(clean)}))
    dataset = load_training_data(config, 24, 1)
    assert sorted(dataset.split("val").sources) == val_sources[::2]
    assert len(dataset.split("train")) == len(everything.split("train"))  # only validation shrinks
    assert len(dataset.split("test")) == len(everything.split("test"))

    from ferlab.evaluation import card

    monkeypatch.setattr(card, "classification_speed", lambda predictor, batch: 1.0)
    run_dir, metrics = train(
        build_config(
            {"name": "clean"}, tiny_config(blob_data, LEARNING_RUN, **{"data.val_clean": str(clean), "train.epochs": 1})
        ),
        tmp_path / "runs",
    )
    assert metrics["val"]["samples"] == len(val_sources[::2])
    card.write_card(run_dir, blob_data, tmp_path / "card.md")
    assert (
        f"selected on the validation images with no near-copy in training (`{clean}`)"
        in (tmp_path / "card.md").read_text()
    )
    clean.write_text("\n".join(val_sources[1::2]) + "\n")  # the audit was rerun with other thresholds
    resumed = Trainer(
        build_config(
            {"name": "clean"}, tiny_config(blob_data, LEARNING_RUN, **{"data.val_clean": str(clean), "train.epochs": 1})
        ),
        run_dir,
    )
    with fails_with(FerlabError, "data.val_clean", "not the file"):
        resumed.restore_checkpoint()

    clean.write_text("test/angry/0.png\n")  # a list made for another split keeps no validation image
    with fails_with(FerlabError, "data.val_clean", clean, "validation"):
        load_training_data(config, 24, 1)
    clean.write_text("\n".join(val_sources) + "\ntrain/angry/0.png\n")  # made with another split of the data
    with fails_with(FerlabError, "data.val_clean", clean, "training images", "data.split_seed"):
        load_training_data(config, 24, 1)
    missing = build_config(
        {"name": "m"}, tiny_config(blob_data, LEARNING_RUN, **{"data.val_clean": str(tmp_path / "no.txt")})
    )
    with fails_with(FerlabError, tmp_path / "no.txt", "no such"):
        load_training_data(missing, 24, 1)


def test_config_file_overrides_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("data:\n  path: somewhere\ntrain:\n  lr: 0.01\n")
    config = load_config(path, ["train.lr=0.5", "augment.policy=geometric", "model.params={width: 16}"])
    assert config.name == "exp" and config.train.lr == 0.5 and config.augment.policy == "geometric"
    assert config.model.params == {"width": 16} and config.flat()["model.params.width"] == 16
    toml = tmp_path / "exp.toml"
    toml.write_text('name = "t"\n[data]\npath = "x"\n[train]\nepochs = 3\n')
    assert load_config(toml).train.epochs == 3
    with fails_with(FerlabError, "train.lrate", "epochs"):
        load_config(path, ["train.lrate=1"])
    with fails_with(FerlabError, "train.epochs", "whole number"):
        load_config(path, ["train.epochs=2.5"])
    with fails_with(FerlabError, "data.max_train_samples", "whole number"):
        load_config(path, ["data.max_train_samples=0.5"])
    with fails_with(FerlabError, "data.val_clean", "str", "5"):
        load_config(path, ["data.val_clean=5"])
    assert load_config(path, ["data.max_train_samples=100"]).data.max_train_samples == 100
    with fails_with(FerlabError, "augment.policy", "heavy", "geometric"):  # the key, the value, an allowed one
        load_config(path, ["augment.policy=heavy"])
    with pytest.raises(FerlabError, match="key=value"):
        load_config(path, ["train.lr"])
    with fails_with(FerlabError, tmp_path / "absent.yaml", "no such"):
        load_config(tmp_path / "absent.yaml")


def test_cli_trains_resumes_and_compares(blob_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"data:\n  path: {blob_data}\nmodel:\n  name: baseline_cnn\n  params: {{input_size: 24}}\n"
        "train:\n  epochs: 1\n  batch_size: 16\n"
    )
    runs = tmp_path / "runs"
    for lr in ("0.001", "0.003"):
        result = runner.invoke(
            app, ["train", str(config), "--runs-dir", str(runs), "--name", f"lr{lr}", "--set", f"train.lr={lr}"]
        )
        assert result.exit_code == 0, result.output
        assert "best epoch 1" in result.output
    result = runner.invoke(app, ["runs", "compare", "--runs-dir", str(runs), "--out", str(tmp_path / "table.md")])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "table.md").read_text()
    assert "| run | train.lr | best epoch | val acc |" in table
    assert "| lr0.001 | 0.001 | 1 |" in table
    (runs / "table.md").write_text(table)  # what `runs compare runs/x/* --out runs/x/table.md` leaves for the next call
    result = runner.invoke(app, ["runs", "compare", *map(str, sorted(runs.glob("*")))])
    assert result.exit_code == 0, result.output
    assert f"skipped 1 file(s), not run folders: {runs / 'table.md'}" in result.output
    assert "| lr0.001 |" in result.output and "| lr0.003 |" in result.output
    (runs / "empty").mkdir()
    cli_error(runner.invoke(app, ["runs", "compare", str(runs / "empty")]), runs / "empty", "not a run folder")
    result = runner.invoke(app, ["train", "--resume", str(runs / "missing")])
    cli_error(result, runs / "missing", "run folder")
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    cli_error(result, tmp_path / "nope.yaml", "no such")


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).resolve().parents[1].glob("configs/**/*.yaml")), ids=lambda p: p.stem
)
def test_shipped_configs_are_valid(path: Path) -> None:
    from ferlab.models.registry import available_models, default_config

    config = load_config(path)
    assert config.model.name in available_models()
    assert set(config.model.params) <= set(default_config(config.model.name))


def test_cli_trains_several_configs_and_a_second_call_skips_finished_runs(blob_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    configs = []
    for name in ("first", "second"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"name: {name}\ndata:\n  path: {blob_data}\nmodel:\n  name: baseline_cnn\n"
            "  params: {input_size: 24}\ntrain:\n  epochs: 1\n  batch_size: 16\n"
        )
        configs.append(str(path))
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", *configs, "--runs-dir", str(runs), "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    assert "first: best epoch" in result.output and "second: best epoch" in result.output
    logs = {name: (runs / name / "train.log").read_text() for name in ("first", "second")}
    assert all(len(log.splitlines()) == 2 for log in logs.values())
    result = runner.invoke(app, ["train", *configs, "--runs-dir", str(runs), "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    assert result.output.count("already trained with this config") == 2
    assert {name: (runs / name / "train.log").read_text() for name in logs} == logs
    result = runner.invoke(app, ["train", *configs, "--runs-dir", str(runs)])  # epochs differ now
    assert result.exit_code == 2 and "another config" in result.output
    result = runner.invoke(app, ["train", *configs, "--name", "x", "--runs-dir", str(runs)])
    cli_error(result, "--name", "one run")


def test_a_failing_config_does_not_stop_the_rest_of_a_sweep(blob_data: Path, tmp_path: Path) -> None:
    configs = []
    for name, data in (("broken", tmp_path / "no-such-data"), ("fine", blob_data)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"name: {name}\ndata:\n  path: {data}\nmodel:\n  name: baseline_cnn\n"
            "  params: {input_size: 24}\ntrain:\n  epochs: 1\n  batch_size: 16\n"
        )
        configs.append(str(path))
    result = CliRunner().invoke(app, ["train", *configs, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, result.output  # the broken config as it failed, then the summary
    assert_names(errors[0], "broken", tmp_path / "no-such-data")
    assert_names(errors[1], "1 of 2", "broken")
    assert "fine" not in errors[1]
    assert (tmp_path / "runs" / "fine" / "model.pt").is_file()


def test_a_student_learns_from_the_teacher_alone(
    blob_data: Path, blob_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # distill_weight=1: the labels carry no weight, so whatever the student learns comes from the teacher
    overrides = tiny_config(
        blob_data,
        LEARNING_RUN,
        **{
            "model.params": "{}",
            "augment.policy": "none",
            "train.mixup_alpha": 0,
            "train.epochs": 6,
            "train.teacher": str(blob_model),
            "train.distill_weight": 1.0,
            "train.distill_temperature": 2.0,
        },
    )
    trainer = Trainer(build_config({"name": "student"}, overrides), tmp_path / "student").prepare()
    assert trainer.teacher_probabilities is not None
    assert torch.allclose(trainer.teacher_probabilities.sum(1), torch.ones(len(trainer.train_data.labels)))
    trainer.write_run_header()
    metrics = trainer.fit()
    assert metrics["val"]["accuracy"] > 0.6  # chance is 0.4 (the majority class)
    from ferlab.evaluation import card

    monkeypatch.setattr(card, "classification_speed", lambda predictor, batch: 1.0)
    card.write_card(tmp_path / "student", blob_data, tmp_path / "card.md")
    assert f"distilled from `{blob_model}` at temperature 2.0 with weight 1.0" in (tmp_path / "card.md").read_text()
    resumed = Trainer(build_config({"name": "student"}, overrides), tmp_path / "student")
    resumed.restore_checkpoint()  # the same teacher file: fine
    resumed.input_digests["train.teacher"] = "0" * 64  # as if the teacher file had been retrained since
    with fails_with(FerlabError, "train.teacher", "not the file"):
        resumed.restore_checkpoint()


def test_ctrl_c_stops_a_whole_sweep(blob_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ferlab.training.entry as entry_module

    trained = []

    def interrupted(config: object, *args: object) -> None:
        trained.append(config)
        raise TrainingInterrupted("interrupted; resume with ...")

    monkeypatch.setattr(entry_module, "train", interrupted)
    configs = []
    for name in ("first", "second"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\ndata:\n  path: {blob_data}\n")
        configs.append(str(path))
    result = CliRunner().invoke(app, ["train", *configs, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "interrupted" in result.output and len(trained) == 1


def test_a_teacher_reads_faces_at_its_size_and_an_ensemble_teaches_its_average(
    blob_data: Path, blob_model: Path, tmp_path: Path
) -> None:
    def taught(teacher: str, **overrides: object) -> Trainer:  # the student takes 24x24 faces, the teacher 48x48
        config = build_config(
            {"name": "student"}, tiny_config(blob_data, LEARNING_RUN, **{"train.teacher": teacher}, **overrides)
        )
        return Trainer(config, tmp_path / "student").prepare()

    single = taught(str(blob_model))
    assert single.teacher_probabilities is not None
    assert torch.allclose(single.teacher_probabilities.sum(1), torch.ones(len(single.train_data.labels)))
    # A+A serves A's calibrated probabilities, softened: softmax(logits / (T x distill T))
    pair = taught(f"{blob_model}+{blob_model}")
    temperature = load_bundle(blob_model).record.temperature
    assert pair.teacher_probabilities is not None and temperature != 1.0
    expected = torch.softmax(torch.log(single.teacher_probabilities) / temperature, dim=1)
    assert torch.allclose(pair.teacher_probabilities, expected, atol=1e-5)
    digest = single.input_digests["train.teacher"]
    assert pair.input_digests["train.teacher"] == f"{digest}+{digest}"
    with fails_with(FerlabError, "1-channel", "3-channel", "in_channels"):
        taught(str(blob_model), **{"model.params": "{input_size: 24, in_channels: 3}"})
    with fails_with(FerlabError, "train.teacher", "str", "True"):
        build_config({"name": "student"}, tiny_config(blob_data, LEARNING_RUN, **{"train.teacher": "true"}))
    with fails_with(FerlabError, "train.distill_weight", "1.5", "0 <= train.distill_weight <= 1"):
        build_config({"name": "student"}, tiny_config(blob_data, LEARNING_RUN, **{"train.distill_weight": 1.5}))


def test_interpolate_mixes_the_best_fine_tuned_weights_with_the_starting_ones(blob_data: Path, tmp_path: Path) -> None:
    """WiSE-FT: model.pt = share x best.pt + (1 - share) x the starting model, batch-norm statistics too."""
    resnet = {"model.name": "resnet9_fer", "train.mixup_alpha": 0, "augment.policy": "none", "train.epochs": 2}
    start_dir, _ = train(
        build_config(
            {"name": "start"},
            tiny_config(blob_data, LEARNING_RUN, **resnet, **{"model.params": "{input_size: 24, width: 4}"}),
        ),
        tmp_path,
    )
    params = f"{{input_size: 24, width: 4, pretrained: {start_dir / 'model.pt'}}}"
    with pytest.raises(FerlabError, match="needs model.params.pretrained"):
        build_config({"name": "x"}, tiny_config(blob_data, LEARNING_RUN, **resnet, **{"train.interpolate": 0.5}))
    with pytest.raises(FerlabError, match="train.interpolate"):
        build_config(
            {"name": "x"},
            tiny_config(blob_data, LEARNING_RUN, **resnet, **{"model.params": params, "train.interpolate": 0}),
        )
    run_dir, metrics = train(
        build_config(
            {"name": "wise"},
            tiny_config(
                blob_data,
                LEARNING_RUN,
                **resnet,
                **{"model.params": params, "train.interpolate": 0.25, "train.lr": 0.05},
            ),
        ),
        tmp_path,
    )
    assert metrics["interpolate"] == 0.25 and "0.25 x the best fine-tuned" in (run_dir / "train.log").read_text()
    start = load_bundle(start_dir).model.state_dict()
    best = torch.load(run_dir / "best.pt", weights_only=True)
    final = load_bundle(run_dir).model.state_dict()
    for key in ("backbone.prep.bn.running_mean", "backbone.res3.conv2.conv.weight", "head.fc.weight"):
        assert key in final, sorted(final)
        assert not torch.allclose(best[key], start[key])  # the fine-tune moved it
        torch.testing.assert_close(final[key], 0.25 * best[key] + 0.75 * start[key])


def test_calibrating_on_augmented_validation_images_fits_the_temperature_on_both(
    blob_data: Path, tmp_path: Path
) -> None:
    """`train.calibrate_on: augmented` fits on the clean validation images plus one augmented copy."""
    from ferlab.models.calibration import fit_temperature
    from ferlab.training.finish import augmented_copy
    from ferlab.training.loop import predict_logits

    options = {"augment.policy": "both", "augment.blur": 0.5, "augment.erase": 0.5, "train.mixup_alpha": 0}
    config = build_config(
        {"name": "aug-cal"}, tiny_config(blob_data, LEARNING_RUN, **options, **{"train.calibrate_on": "augmented"})
    )
    run_dir, metrics = train(config, tmp_path)
    assert metrics["calibrated_on"] == "augmented"
    with fails_with(FerlabError, "train.calibrate_on", "clean, augmented"):
        build_config({"name": "x"}, tiny_config(blob_data, LEARNING_RUN, **{"train.calibrate_on": "corrupted"}))
    trainer = Trainer(config, run_dir).prepare()
    data = trainer.prepared
    bundle = load_bundle(run_dir)
    augmented = augmented_copy(data.val.images, config)
    assert augmented.dtype == torch.uint8 and augmented.shape == data.val.images.shape
    assert not torch.equal(augmented, data.val.images)
    torch.testing.assert_close(augmented, augmented_copy(data.val.images, config))  # seeded
    labels = data.val.labels.numpy()
    logits = [predict_logits(bundle.model, images, trainer.runtime).numpy() for images in (data.val.images, augmented)]
    expected = fit_temperature(np.concatenate(logits), np.concatenate([labels, labels]))
    assert bundle.record.temperature == pytest.approx(expected, rel=1e-3)
    assert bundle.record.temperature != pytest.approx(fit_temperature(logits[0], labels), rel=1e-3)


def test_a_model_finished_with_flip_is_calibrated_scored_and_served_with_it(blob_data: Path, tmp_path: Path) -> None:
    """`train.tta: flip`: the temperature is fitted on the averaged logits of each face and its
    mirror image, the model and its ONNX manifest record it, and every predictor and evaluation
    uses it unless told otherwise."""
    from ferlab.evaluation.report import run_evaluation
    from ferlab.inference.predictor import Predictor
    from ferlab.models.calibration import fit_temperature, softmax
    from ferlab.models.record import ModelRecord
    from ferlab.training.loop import predict_logits

    with fails_with(FerlabError, "train.tta", "none, flip"):
        build_config({"name": "x"}, tiny_config(blob_data, LEARNING_RUN, **{"train.tta": "tencrop"}))
    config = build_config({"name": "flip"}, tiny_config(blob_data, LEARNING_RUN, **{"train.tta": "flip"}))
    run_dir, metrics = train(config, tmp_path)
    bundle = load_bundle(run_dir)
    assert metrics["tta"] == "flip" and bundle.record.tta == "flip"
    trainer = Trainer(config, run_dir).prepare()
    images, labels = trainer.prepared.val.images, trainer.prepared.val.labels.numpy()
    logits = [predict_logits(bundle.model, x, trainer.runtime).numpy() for x in (images, images.flip(-1))]
    assert not np.allclose(logits[0], logits[1], atol=1e-2)  # the blobs are not mirror-symmetric
    assert bundle.record.temperature == pytest.approx(fit_temperature((logits[0] + logits[1]) / 2, labels), rel=1e-3)

    faces = images.permute(0, 2, 3, 1).numpy()
    predictor = Predictor(run_dir, backend="torch", prior="train")  # uncorrected, to compare with softmax
    assert predictor.tta == "flip" and Predictor(run_dir, backend="torch", tta="none").tta == "none"
    engine = predictor.engine
    averaged = (engine.logits(faces) + engine.logits(np.ascontiguousarray(faces[:, :, ::-1]))) / 2
    np.testing.assert_allclose(predictor.classify(faces), softmax(averaged, bundle.record.temperature), atol=1e-5)
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(tmp_path / "face.png"), faces[0])
    served = {}
    for tta in ("auto", "none"):
        args = ["predict", str(tmp_path / "face.png"), "--no-detect", "--model", str(run_dir), "--backend", "torch"]
        result = CliRunner().invoke(app, [*args, "--tta", tta, "--out", str(tmp_path / f"{tta}.json")])
        assert result.exit_code == 0, result.output
        served[tta] = json.loads((tmp_path / f"{tta}.json").read_text())[0]["probabilities"]
    assert served["auto"] != served["none"]  # --tta none: one view, as the model's plain logits

    pytest.importorskip("onnxruntime")
    (tmp_path / "onnx").mkdir()
    result = CliRunner().invoke(app, ["export", "--model", str(run_dir), "--out", str(tmp_path / "onnx")])
    assert result.exit_code == 0, result.output
    (manifest_path,) = (tmp_path / "onnx").glob("*.json")
    assert ModelRecord.load(manifest_path).tta == "flip"
    older = {k: v for k, v in json.loads(manifest_path.read_text()).items() if k != "tta"}
    manifest_path.write_text(json.dumps(older))  # a manifest written before train.tta: served plain
    assert ModelRecord.load(manifest_path).tta == "none"

    out, summary = run_evaluation(run_dir, blob_data, tta=("none",), gradcam_examples=False, out=tmp_path / "eval")
    assert summary.served_tta == "flip" and set(summary.tta) == {"none"}
    assert "mirror image" in summary.protocol and "served with `flip`" in (out / "report.md").read_text()

    # as a teacher it teaches as served: its flip-averaged logits on the training faces
    student = Trainer(
        build_config({"name": "student"}, tiny_config(blob_data, LEARNING_RUN, **{"train.teacher": str(run_dir)})),
        tmp_path / "student",
    ).prepare()
    train_images = student.train_data.images
    served = [predict_logits(bundle.model, x, trainer.runtime) for x in (train_images, train_images.flip(-1))]
    expected = torch.softmax((served[0] + served[1]) / 2 / student.config.train.distill_temperature, dim=1)
    assert student.teacher_probabilities is not None
    torch.testing.assert_close(student.teacher_probabilities, expected, atol=2e-3, rtol=0)
