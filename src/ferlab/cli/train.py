"""`ferlab train` and `ferlab runs compare`: experiments as config files and run folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ferlab.cli.common import user_errors
from ferlab.cli.options import OldModelArg, TrainDeviceOpt, Typer, model_or_old_argument
from ferlab.errors import FerlabError

runs_app = Typer(help="Work with run folders: the experiment table.", no_args_is_help=True)


@user_errors
def train(
    configs: Annotated[
        list[Path] | None, typer.Argument(help="Experiment config(s) (YAML or TOML); several are trained in turn.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: --set train.lr=0.01 (repeatable).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name (default: the config's name).")] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where run folders go.")] = Path("runs"),
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this run folder from its last epoch.")
    ] = None,
    device: TrainDeviceOpt = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            help="Train in N processes (DistributedDataParallel: one per GPU, or gloo on the CPU) "
            "by starting torch.distributed.run; train.batch_size stays the global batch.",
        ),
    ] = None,
) -> None:
    """Train a model from a config into runs/<name>/ (config, summary, history, curves, checkpoints, metrics).

    Several configs make a sweep (e.g. a report's experiment table, with the same --set
    overrides for all). A run already finished with the same config is skipped and an
    interrupted one continues, so a sweep cut short is finished by running it again. A
    config that fails is reported and the sweep goes on with the next one.

    Several processes: `--nproc N`, or `torchrun --nproc-per-node N --no-python ferlab train CONFIG`.
    """
    from ferlab.models.choices import check_device
    from ferlab.training import distributed

    if device is not None:
        check_device(device, auto=True)
    if nproc is not None and distributed.ranks_from_env().world_size == 1:
        args = [str(c) for c in configs or []] + [f"--set={item}" for item in set_ or []]
        args += [f"--name={name}"] * bool(name) + [f"--runs-dir={runs_dir}"] + [f"--device={device}"] * bool(device)
        args += [f"--resume={resume}"] * (resume is not None)
        code = distributed.launch(nproc, ["train", *args])
        if code:
            raise FerlabError(f"the {nproc} training processes failed (exit code {code}); their errors are above")
        return
    try:
        _train(configs, set_, name, runs_dir, resume, device)
    except BaseException:
        distributed.shutdown()
        raise
    distributed.end_rank()


def _train(
    configs: list[Path] | None,
    set_: list[str] | None,
    name: str | None,
    runs_dir: Path,
    resume: Path | None,
    device: str | None,
) -> None:
    import ferlab
    from ferlab.training.config import load_config
    from ferlab.training.trainer import TrainingInterrupted

    if resume is not None:
        if configs or set_:
            raise FerlabError("--resume continues a run with its saved config; give no CONFIG or --set")
        _report(*ferlab.resume(resume, device=device))
        return
    if not configs:
        raise FerlabError("give a CONFIG file to train, or --resume RUN to continue one")
    if name and len(configs) > 1:
        raise FerlabError("--name names one run; leave it out when training several configs")
    # quoted, so --name 1e5 stays a string; ensure_ascii=False: an emoji stays one character
    overrides = (set_ or []) + ([f"name={json.dumps(name, ensure_ascii=False)}"] if name else [])
    if len(configs) == 1:
        _report(*ferlab.train(load_config(configs[0], overrides), runs_dir=runs_dir, device=device))
        return
    # A sweep: one broken config must not cost a night's sweep. Each is checked before
    # anything trains, the bad ones are reported, and every other one trains.
    failed: list[str] = []
    experiments = []
    for path in configs:
        try:
            experiments.append(load_config(path, overrides))
        except FerlabError as exc:
            _sweep_error(str(path), exc)
            failed.append(str(path))
    names = [experiment.name for experiment in experiments]
    if len(set(names)) < len(names):
        raise FerlabError(
            f"two configs share a run name ({', '.join(sorted({n for n in names if names.count(n) > 1}))})"
        )
    for experiment in experiments:
        try:
            _report(*ferlab.train(experiment, runs_dir=runs_dir, device=device))
        except TrainingInterrupted:
            raise  # Ctrl-C stops the whole sweep
        except Exception as exc:  # noqa: BLE001 - whatever broke one run, the others still train
            _sweep_error(experiment.name, exc)
            failed.append(experiment.name)
    if failed:
        raise FerlabError(f"{len(failed)} of {len(configs)} runs failed: {', '.join(failed)}")


def _sweep_error(what: str, exc: Exception) -> None:
    """One line per failed config of a sweep; an unexpected exception also names its type."""
    message = " ".join(str(exc).split()) or "no message"
    if not isinstance(exc, (FerlabError, OSError)):  # an OSError says what it is: "[Errno 28] No space left..."
        message = f"{type(exc).__name__}: {message}"
    typer.secho(f"error: {what}: {message}; going on with the next config", fg=typer.colors.RED, err=True)


def _report(run_dir: Path, metrics: dict[str, Any]) -> None:
    from ferlab.training.distributed import ranks_from_env

    if ranks_from_env().rank != 0:
        return  # under torchrun only rank 0 reports
    line = f"val accuracy {100 * metrics['val']['accuracy']:.2f}%"
    if "test" in metrics:
        line += f", test accuracy {100 * metrics['test']['accuracy']:.2f}%"
    typer.echo(f"{run_dir}: best epoch {metrics['best_epoch']}, {line}; model in {run_dir / 'model.pt'}")


@runs_app.command("compare")
@user_errors
def compare(
    runs: Annotated[list[Path] | None, typer.Argument(help="Run folders (default: every run in --runs-dir).")] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where run folders are.")] = Path("runs"),
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the table: .md for Markdown, .csv for CSV.")
    ] = None,
) -> None:
    """The experiment table: config keys that differ, best epoch, val/test accuracy, macro-F1, time."""
    from ferlab.training.runs import compare_runs, to_csv, to_markdown

    folders = runs or sorted(p for p in runs_dir.glob("*") if (p / "config.yaml").is_file())
    files = [p for p in folders if p.is_file()]  # a shell glob (runs/x/*) also names the tables written there
    if files:
        typer.echo(f"skipped {len(files)} file(s), not run folders: {', '.join(map(str, files))}", err=True)
    header, rows = compare_runs([p for p in folders if not p.is_file()])
    table = to_markdown(header, rows)
    typer.echo(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(to_csv(header, rows) if out.suffix.lower() == ".csv" else table)
        typer.echo(f"wrote {out}")


@runs_app.command("card")
@user_errors
def card(
    data: Annotated[Path, typer.Option("--data", help="Dataset with the test split to report on.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the Markdown card.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="The run folder to write the card of.")] = None,
    dedup: Annotated[
        Path | None, typer.Option("--dedup", help="Clean list from `ferlab data audit --write-clean-split`.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Model name on the card.")] = None,
    command: Annotated[str | None, typer.Option("--command", help="The training command, for the card.")] = None,
    old_run: OldModelArg = None,
) -> None:
    """Evaluate a run on its test split and write its model card (data, config, metrics, ECE, speed)."""
    from ferlab.evaluation.card import write_card

    run = model_or_old_argument(model, old_run, "runs card")
    if run is None:
        raise FerlabError("give the run folder: --model RUN")
    report = write_card(Path(run), data, out, dedup=dedup, name=name, command=command)
    typer.echo(f"test accuracy {100 * report.all.accuracy:.2f}%; wrote {out}")
