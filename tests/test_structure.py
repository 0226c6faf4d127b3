"""The package's module structure: no import cycle among eb_study's modules, counting the imports inside functions too
(a lazy import that closes a cycle is still a cycle for a reader), and the optional integrations import nothing the
core modules do not already need."""
import ast
from pathlib import Path

import eb_study

PKG = Path(eb_study.__file__).parent


def module_name(path: Path) -> str:
    return '.'.join(path.relative_to(PKG.parent).with_suffix('').parts)


def imports(path: Path) -> set[str]:
    """The eb_study modules that `path` imports, anywhere in its code."""
    me, found = module_name(path).split('.'), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = me[:len(me) - node.level] if node.level else []
            found.add('.'.join(base + node.module.split('.')))
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith('eb_study.')}


def graph() -> dict[str, set[str]]:
    files = [p for p in PKG.rglob('*.py') if p.stem not in ('__init__', '__main__', '_modidx')]
    known = {module_name(p) for p in files}
    return {module_name(p): {m for m in imports(p) if m in known and m != module_name(p)} for p in files}


def cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `g`, or None."""
    state, stack = {}, []
    def visit(n):
        state[n] = 'open'; stack.append(n)
        for d in sorted(g[n]):
            if state.get(d) == 'open': return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)): return c
        state[n] = 'done'; stack.pop()
    for n in sorted(g):
        if n not in state and (c := visit(n)): return c
    return None


def test_the_import_graph_of_eb_study_has_no_cycle():
    g = graph()
    assert {'eb_study.train', 'eb_study.models', 'eb_study.integrations.core'} <= set(g)   # the graph sees the package
    assert 'eb_study.depgraph' in g['eb_study.models'] and 'eb_study.masking' in g['eb_study.integrations.core']
    c = cycle(g)
    assert c is None, ' -> '.join(c)


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert cycle({'a': {'b'}, 'b': set()}) is None
