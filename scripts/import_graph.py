"""Draw which ferlab package imports which, layer by layer, from grimp's import graph.

python scripts/import_graph.py            # -> docs/figures/import_graph.{dot,png}

Every arrow is "imports", drawn from the importing package to the imported one and labelled
with the number of module-to-module imports behind it (lazy imports inside functions count).
The layers are the import-linter contract's in pyproject.toml, top first; an arrow that runs
up a layer, or across between two packages of one layer, is drawn red and makes the script
exit 1, so the picture cannot show a violation quietly; one made only of imports the contract
ignores (`ignore_imports`, known and scheduled for removal) is red and dashed. Render the .dot elsewhere with
`dot -Tsvg docs/figures/import_graph.dot`; the PNG is drawn with matplotlib (no Graphviz needed).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def contract(pyproject: Path = ROOT / "pyproject.toml") -> tuple[list[list[str]], set[tuple[str, str]]]:
    """The layers contract's layers (top first, each a list of independent package names) and its
    ignored imports as (importer, imported) module pairs."""
    config = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]
    layers_contract = next(c for c in config["contracts"] if c["type"] == "layers")
    layers = [[name.strip() for name in layer.split("|")] for layer in layers_contract["layers"]]
    ignored = {tuple(part.strip() for part in item.split("->")) for item in layers_contract.get("ignore_imports", [])}
    return layers, ignored  # type: ignore[return-value]


def package_edges(
    layers: list[list[str]],
    ignored: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
) -> tuple[Counter[tuple[str, str]], set[tuple[str, str]]]:
    """(importer, imported) -> number of module imports between the contract's packages, and the
    package pairs whose every import is one the contract ignores."""
    import grimp

    graph = grimp.build_graph("ferlab")
    packages = [name for layer in layers for name in layer]

    def owner(module: str) -> str | None:
        return next((p for p in packages if module == p or module.startswith(p + ".")), None)

    edges: Counter[tuple[str, str]] = Counter()
    kept: set[tuple[str, str]] = set()
    for module in graph.modules:
        source = owner(module)
        for imported in graph.find_modules_directly_imported_by(module):
            target = owner(imported)
            if source and target and source != target:
                edges[source, target] += 1
                if (module, imported) not in ignored:
                    kept.add((source, target))
    return edges, set(edges) - kept


def wrong_way(edges: Counter[tuple[str, str]], layers: list[list[str]]) -> list[tuple[str, str]]:
    """Edges from a lower layer to a higher one, or between packages of one layer."""
    level = {name: i for i, layer in enumerate(layers) for name in layer}
    return sorted(edge for edge in edges if level[edge[0]] >= level[edge[1]])


def short(name: str) -> str:
    return name.removeprefix("ferlab.")


Edge = tuple[str, str]


def write_dot(path: Path, edges: Counter[Edge], layers: list[list[str]], bad: list[Edge], ignored: set[Edge]) -> None:
    lines = ["digraph ferlab {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb"];']
    for i, layer in enumerate(layers):
        names = " ".join(f'"{short(n)}";' for n in layer)
        lines.append(f"  {{ rank=same; {names} }}  // layer {i + 1}")
    for (source, target), count in sorted(edges.items()):
        colour = "red" if (source, target) in bad else "#555555"
        style = "dashed" if (source, target) in ignored else "solid"
        lines.append(f'  "{short(source)}" -> "{short(target)}" [label="{count}", color="{colour}", style="{style}"];')
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


def _end(x: float, y: float, other_x: float, other_y: float) -> tuple[float, float]:
    """Where an arrow meets the box at (x, y): its top or bottom edge, or a side within a layer."""
    if abs(y - other_y) < 1e-9:
        return (x + 0.06 if other_x > x else x - 0.06), y
    return x, (y - 0.03 if other_y < y else y + 0.03)


def write_png(path: Path, edges: Counter[Edge], layers: list[list[str]], bad: list[Edge], ignored: set[Edge]) -> None:
    from matplotlib.figure import Figure

    position = {}
    for row, layer in enumerate(layers):
        for column, name in enumerate(layer):
            position[name] = ((column + 1) / (len(layer) + 1), 1 - (row + 0.5) / len(layers))
    fig = Figure(figsize=(7, 8))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    for row in range(len(layers)):
        y = 1 - (row + 0.5) / len(layers)
        ax.axhspan(y - 0.045, y + 0.045, color="#f4f4f4", zorder=0)
        ax.text(0.01, y, f"layer {row + 1}", fontsize=8, color="#888888", va="center")
    for (source, target), count in sorted(edges.items()):
        (x0, y0), (x1, y1) = position[source], position[target]
        colour = "red" if (source, target) in bad else "#4a6fa5"
        ax.annotate(
            "",
            xy=_end(x1, y1, x0, y0),
            xytext=_end(x0, y0, x1, y1),
            arrowprops={
                "arrowstyle": "-|>",
                "color": colour,
                "lw": 0.6 + 0.12 * count**0.5,
                "alpha": 0.75,
                "linestyle": "--" if (source, target) in ignored else "-",
                "connectionstyle": f"arc3,rad={0.08 if x1 >= x0 else -0.08}",
                "shrinkA": 0,
                "shrinkB": 0,
            },
            zorder=1,
        )
        ax.text(
            x0 + 0.55 * (x1 - x0),
            y0 + 0.55 * (y1 - y0),
            str(count),
            fontsize=7,
            color=colour,
            ha="center",
            va="center",
            zorder=3,
            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none"},
        )
    for name, (x, y) in position.items():
        ax.text(
            x,
            y,
            short(name),
            ha="center",
            va="center",
            fontsize=11,
            zorder=4,
            bbox={"boxstyle": "round,pad=0.4", "fc": "#eef3fb", "ec": "#4a6fa5"},
        )
    ax.text(
        0.5,
        0.995,
        "ferlab imports (arrow: importer -> imported, label: module imports)",
        ha="center",
        va="top",
        fontsize=9,
    )
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "import_graph", help="Path stem.")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    layers, ignored_imports = contract()
    edges, ignored = package_edges(layers, ignored_imports)
    bad = wrong_way(edges, layers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_dot(args.out.with_suffix(".dot"), edges, layers, bad, ignored)
    write_png(args.out.with_suffix(".png"), edges, layers, bad, ignored)
    print(f"wrote {args.out.with_suffix('.dot')} and {args.out.with_suffix('.png')}: {len(edges)} package imports")
    for source, target in bad:
        known = " (ignored by the contract, dashed)" if (source, target) in ignored else ""
        print(f"runs up or across a layer: {source} -> {target} ({edges[source, target]} imports){known}")
    return 1 if set(bad) - ignored else 0


if __name__ == "__main__":
    sys.exit(main())
