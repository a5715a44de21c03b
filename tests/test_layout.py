"""The house: packages that say what they are, torch-free where the explorer needs them,
and no import cycle anywhere in minigpt/ or tui/ (lazy imports inside functions count)."""

import ast
from dataclasses import fields
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("text", "models", "decode", "engine", "backends", "host", "cli")
TORCH_FREE = ("minigpt", "minigpt.errors", "minigpt.settings", "minigpt.steps", "minigpt.paths",
              "minigpt.branches", "minigpt.text", "minigpt.text.tokenizer", "minigpt.host",
              "minigpt.host.protocol", "minigpt.host.session", "minigpt.host.engine_host",
              "minigpt.cli", "minigpt.cli.main", "minigpt.engine", "minigpt.models.hparams", "minigpt.text.chat",
              "minigpt.text.hf_tokenizer", "minigpt.backends", "minigpt.backends.http",
              "minigpt.backends.served_api", "minigpt.backends.llama_server",
              "minigpt.backends.openai_servers", "minigpt.backends.served",
              "minigpt.backends.served_engine", "minigpt.backends.served_why",
              "minigpt.engine.turn", "minigpt.host.reading_ops")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every module of minigpt/ and tui/ → the modules of theirs it imports, anywhere."""
    modules = {module_name(p): p for folder in ("minigpt", "tui")
               for p in (ROOT / folder).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] \
                    if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) \
                    if node.level else node.module or ""
                for alias in node.names:
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules
                              else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iteratively)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_import_cycle_in_minigpt_or_tui():
    graph = import_graph()
    assert "minigpt.engine.engine" in graph and "tui.app" in graph  # the walk saw them
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_packages_say_what_they_are_and_the_top_stays_small():
    top = [p.stem for p in (ROOT / "minigpt").glob("*.py") if p.stem != "__init__"]
    assert len(top) <= 8, top
    for package in PACKAGES:
        doc = ast.get_docstring(ast.parse((ROOT / "minigpt" / package / "__init__.py")
                                          .read_text(encoding="utf-8")))
        assert doc and ("torch-free" in doc.lower() or "imports torch" in doc.lower()), package


def test_torch_free_modules_stay_torch_free():
    code = (f"import importlib, sys\nfor m in {TORCH_FREE!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])\n"
            "sys.exit('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_public_names_keep_working():
    from minigpt.checkpoint import load
    from minigpt.engine import Engine
    from minigpt.model import Model
    from minigpt.models.book import Model as BookModel
    from minigpt.models.checkpoint import load as loader
    assert Model is BookModel and load is loader and Engine.__name__ == "Engine"


def test_the_engine_calls_its_decoder_through_the_protocol():
    """No getattr/hasattr probing of the decoder; the graphed decoder reaches its inner
    decoder through methods, never by writing its fields."""
    import re

    engine = "".join((ROOT / "minigpt" / "engine" / name).read_text(encoding="utf-8")
                     for name in ("engine.py", "insights.py"))
    assert not re.search(r"(getattr|hasattr)\(self\.decoder", engine)
    graphed = (ROOT / "minigpt" / "decode" / "cudagraphs.py").read_text(encoding="utf-8")
    writes = re.findall(r"\b(?:self\.decoder|d)\.(\w+) = ", graphed)
    assert writes == ["capture_attention"], writes  # the one knob the engine sets through it
    from minigpt.decode.base import Decoder, EagerDecoder
    from minigpt.decode.decoder import BookDecoder
    from minigpt.models.nanogpt import NanoGPTDecoder
    assert issubclass(BookDecoder, EagerDecoder) and issubclass(NanoGPTDecoder, EagerDecoder)
    assert {"reset", "last_logits", "greedy_rows"} <= set(dir(Decoder))


def test_the_branch_tree_is_the_explorers_alone():
    """The engine side computes the sequence it is given; the explorer (torch-free
    ``minigpt.branches``) keeps what was abandoned and restores a branch by ``Restore``."""
    graph = import_graph()
    engine_side = [m for m in graph if m.startswith(("minigpt.engine", "minigpt.host.engine_host",
                                                     "minigpt.decode", "minigpt.models"))]
    assert engine_side and not [m for m in engine_side if "minigpt.branches" in graph[m]]
    from minigpt.host import protocol as p
    assert not hasattr(p, "ListBranches") and not hasattr(p, "Switch")
    assert "branches" not in {f.name for f in fields(p.RunFinished)}
    assert "settings" not in {f.name for f in fields(p.RunFinished)}  # the explorer knows them
    assert "minigpt.branches" in graph["tui.app"]


def test_a_models_shape_is_typed_inside_and_the_books_dict_in_files(tiny_hp):
    """``HParams`` (vocab_size, not max_token_value) inside the code; a book dict in, the
    same dict out; no module reads the book's key for the vocabulary but the translator
    and the file formats (which read and fill the dict as the book writes it)."""
    from minigpt.model import Model
    from minigpt.models.hparams import HParams

    hp = HParams.from_book(tiny_hp)
    shape = ("d_model", "context_length", "num_blocks", "num_heads", "max_token_value",
             "dropout")
    assert hp.vocab_size == tiny_hp["max_token_value"]
    assert hp.book_dict() == {k: tiny_hp[k] for k in shape}  # a training run's extras aside
    assert HParams.from_book(hp.book_dict()) == hp
    assert Model(tiny_hp).hparams == hp == Model(hp).hparams
    readers = [path for path in (ROOT / "minigpt").rglob("*.py")
               if '["max_token_value"]' in path.read_text(encoding="utf-8")]
    assert sorted(p.name for p in readers) == ["formats.py", "hparams.py"], readers
