"""Write the record of every shipped model, and generate `weights/models.json` and each card's
facts block from the records: run after adding or replacing a shipped model.

    python scripts/write_shipped_records.py              # rewrite from the weights and records
    python scripts/write_shipped_records.py --add NAME --description TEXT --license TEXT \\
        --test-set TEXT --accuracy PERCENT --macro-f1 F1    # a new shipped model, listed last

A record (ferlab.models.record) is the JSON beside a model's ONNX exports in weights/onnx/:
what running the model needs (from its weights file), what describes it (kept from its record,
or given with --add) and its files with their checksums. Adding a shipped model:

1. copy its model.pt to src/ferlab/weights/<NAME>.pt and its card (`ferlab runs card RUN --out
   src/ferlab/weights/<NAME>.md ...`) beside it;
2. export it into the package: `ferlab export src/ferlab/weights/<NAME>.pt --int8 --calibration
   DATA --out src/ferlab/weights/onnx` (the fp32 and int8 files, named by the weights' digest);
3. run this script with --add (the headline figures are the card's: accuracy in percent as
   "Accuracy **87.54%**" shows it, and its macro-F1);
4. run tests/test_records.py: models.json, the cards and the records must agree with the weights.
"""

from __future__ import annotations

import argparse
import json
import sys

from ferlab.models.bundle import load_bundle
from ferlab.models.record import Headline, ModelRecord, with_card_facts
from ferlab.models.shipped import ONNX_DIR, REGISTRY_FILE, WEIGHTS_DIR, shipped_file, shipped_record, table_entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--add", metavar="NAME", help="a new shipped model: weights/NAME.pt and weights/NAME.md")
    parser.add_argument("--description")
    parser.add_argument("--license")
    parser.add_argument("--test-set")
    parser.add_argument("--accuracy", type=float, help="headline test accuracy in percent")
    parser.add_argument("--macro-f1", type=float)
    args = parser.parse_args(argv)
    table = json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))
    if args.add:
        given = [args.description, args.license, args.test_set, args.accuracy, args.macro_f1]
        if args.add in table or any(value is None for value in given):
            parser.error(
                "--add takes a new name and all of --description, --license, --test-set, --accuracy, --macro-f1"
            )
        table[args.add] = {"file": f"{args.add}.pt", "record": None, "card": f"{args.add}.md"}
    generated = {}
    for name, values in table.items():
        weights = WEIGHTS_DIR / f"{name}.pt"
        bundle = load_bundle(weights)
        if name == args.add:
            headline = Headline(args.test_set, round(args.accuracy / 100, 4), args.macro_f1)
            facts = (args.description, headline, args.license)
        else:
            old = ModelRecord.load(WEIGHTS_DIR / values["record"])
            facts = (old.description or "", old.headline, old.license or "")
        record = shipped_record(name, bundle.current_record(weights), *facts)
        path = record.save(ONNX_DIR)
        card = shipped_file(record, "card")
        card.write_text(with_card_facts(card.read_text(encoding="utf-8"), record), "utf-8")
        generated[name] = table_entry(record)
        print(f"{name}: wrote {path.relative_to(WEIGHTS_DIR.parent)} and the facts of {card.name}")
        if values["record"] not in (None, generated[name]["record"]):
            print(f"{name}: its weights changed; delete the stale weights/{values['record']}", file=sys.stderr)
    REGISTRY_FILE.write_text(json.dumps(generated, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {REGISTRY_FILE.relative_to(WEIGHTS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
