"""MkDocs hooks that build the eb_study site from the notebooks and the package (configured in `mkdocs.yml`).

- Notebooks: every `nbs/*.ipynb` (index first, then file-name order, so new notebooks appear by themselves) is
  shown with its committed outputs, never re-executed. nbdev's cell directives are honoured (`#| hide` cells are
  dropped, `#|` lines removed), LaTeX in markdown becomes MathML (no script from the network), and code spans naming
  a notebook or a module link to its page.
- API reference: one page per module, generated from its `__all__`, docstrings and docments comments through
  fastcore's `MarkdownRenderer` (the renderer nbdev's `show_doc` uses).
- Checks: after the build every internal link and anchor of the HTML is resolved and anything loaded from the
  network is reported; both are warnings, so `mkdocs build --strict` fails on them.
"""
from __future__ import annotations

import importlib, inspect, json, re, sys, tempfile, types
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mkdocs.plugins import event_priority, get_plugin_logger
from mkdocs.structure.files import File

log = get_plugin_logger('eb_study')
NBS = Path(__file__).resolve().parent
LIB = 'eb_study'
_stage: tempfile.TemporaryDirectory | None = None  # the processed notebooks, for one build
_modules: list[tuple[str, str]] = []                # (module, notebook file) pairs, in notebook order

# ---------------------------------------------------------------- notebooks
def notebooks(path:Path=NBS) -> list[Path]:
    "The site's notebooks in `path`: `index.ipynb` first, then by file name (nbdev's order); `_`/`.` names skipped."
    nbs = sorted(p for p in path.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    return sorted(nbs, key=lambda p: p.stem != 'index')

_re_directive = re.compile(r'^\s*#\|\s*([\w-]+):?\s*(.*?)\s*$')

def directives(src:str) -> dict[str, str]:
    "nbdev's `#| name value` directives at the top of a code cell's `src`."
    res = {}
    for line in src.splitlines():
        if not line.strip(): continue
        m = _re_directive.match(line)
        if not m: break
        res[m.group(1)] = m.group(2)
    return res

def title_of(nb:dict, default:str) -> str:
    "The notebook's first `# Title`, else `default`."
    for cell in nb['cells']:
        if cell['cell_type'] == 'markdown':
            m = re.search(r'^#\s+(.+?)\s*$', ''.join(cell['source']), re.M)
            if m: return m.group(1)
    return default

def default_exp(nb:dict) -> str | None:
    "The module a notebook exports to (`#| default_exp`), if any."
    for cell in nb['cells']:
        if cell['cell_type'] == 'code' and 'default_exp' in (d := directives(''.join(cell['source']))):
            return d['default_exp']
    return None

_re_code = re.compile(r'(```.*?```|`[^`\n]+`)', re.S)         # fenced blocks and code spans
_re_math = re.compile(r'\$\$(.+?)\$\$|\$([^$\n]+?)\$', re.S)

def _mathml(m) -> str:
    "MathML for the `$…$` or `$$…$$` match `m` (left as it is, with a warning, if it does not convert)."
    from latex2mathml.converter import convert
    tex, display = (m.group(1), 'block') if m.group(1) is not None else (m.group(2), 'inline')
    try: return convert(tex.strip(), display=display)
    except Exception as e:
        log.warning(f'cannot convert LaTeX {tex!r} to MathML: {e}')
        return m.group(0)

def markdown(text:str, pages:dict[str, str]) -> str:
    "Markdown `text` for the site: LaTeX outside code as MathML; a code span naming a key of `pages` links to it."
    parts = _re_code.split(text)
    def part(i, p):
        if i % 2 == 0: return _re_math.sub(_mathml, p)
        name, linked = p.strip('`'), parts[i-1].endswith('[')
        return f'[{p}]({pages[name]})' if not p.startswith('```') and not linked and name in pages else p
    return ''.join(part(i, p) for i, p in enumerate(parts))

def process(nb:dict, pages:dict[str, str]) -> dict:
    "Apply nbdev's display directives to `nb` (a copy) and prepare its markdown for the site."
    cells = []
    for cell in nb['cells']:
        cell = dict(cell)
        src = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown':
            cell['source'] = markdown(src, pages)
        elif cell['cell_type'] == 'code':
            d = directives(src)
            if 'hide' in d or d.get('include') == 'false' or 'default_exp' in d: continue
            src = '\n'.join(l for l in src.splitlines() if not _re_directive.match(l)).strip('\n')
            if d.get('echo') == 'false' or 'hide_input' in d: src = ''
            if d.get('output') == 'false': cell['outputs'] = []
            if not src and not cell.get('outputs'): continue
            cell['source'] = src
            if not src: cell.setdefault('metadata', {})['tags'] = ['hide-input']
        cells.append(cell)
    return {**nb, 'cells': cells}

# ---------------------------------------------------------------- API reference
def _own_members(cls) -> list[tuple[str, object]]:
    "Public methods and properties defined in `cls` itself, in source order."
    res = []
    for name, m in vars(cls).items():
        if name.startswith('_'): continue
        f = m.fget if isinstance(m, property) else getattr(m, '__func__', m)
        if inspect.isfunction(f) and f.__doc__: res.append((name, f))
    return res

def api_page(module:str, nb_page:str | None) -> str:
    "Markdown reference of `eb_study.module`: each name of its `__all__`, rendered from docstrings and docments."
    from fastcore.docments import MarkdownRenderer
    mod = importlib.import_module(f'{LIB}.{module}')
    if NBS.parent not in Path(mod.__file__).resolve().parents:
        log.warning(f'{mod.__name__} is imported from {mod.__file__}, not from this repository {NBS.parent}')
    names = getattr(mod, '__all__', None)
    if names is None: raise ValueError(f'{LIB}.{module} has no __all__: export it with nbdev')
    md = [f'# {LIB}.{module}\n']
    if nb_page: md.append(f'Generated from the module\'s docstrings and docments; the notebook that builds and tests it '
                          f'is [{Path(nb_page).stem}](../{nb_page}).\n')
    for name in names:
        obj = getattr(mod, name)
        md.append(f'## `{name}` {{#{name}}}\n')
        if isinstance(obj, (types.GenericAlias, types.UnionType)) or type(obj).__module__ == 'typing':
            md.append(f'```python\n{name} = {inspect.formatannotation(obj)}\n```\n')  # a type alias
        elif inspect.isclass(obj) or callable(obj):
            md.append(MarkdownRenderer(obj, name=name)._repr_markdown_() + '\n')
            if inspect.isclass(obj):
                for mname, m in _own_members(obj):
                    md.append(f'### `{name}.{mname}` {{#{name}.{mname}}}\n')
                    md.append(MarkdownRenderer(m, name=f'{name}.{mname}')._repr_markdown_() + '\n')
        else:
            desc = f'`{type(obj).__name__}`'
            if isinstance(obj, dict): desc += ' with keys ' + ', '.join(f'`{k}`' for k in obj)
            md.append(desc + '\n')
    return '\n'.join(md)

# ---------------------------------------------------------------- mkdocs events
def on_config(config):
    "Stage the processed notebooks and write the navigation: Home, the notebooks, the API reference."
    global _stage, _modules
    if str(NBS.parent) not in sys.path: sys.path.insert(0, str(NBS.parent))  # document this clone's package
    if _stage is not None: _stage.cleanup()
    _stage = tempfile.TemporaryDirectory(prefix='eb_study_site_')
    nbs = [(p, json.loads(p.read_text(encoding='utf-8'))) for p in notebooks()]
    if not nbs or nbs[0][0].stem != 'index': raise ValueError(f'{NBS} has no index.ipynb for the front page')
    mods = [(p, m) for p, nb in nbs if (m := default_exp(nb))]
    pages = {p.stem: f'{p.stem}.html' for p, _ in nbs} | {f'{LIB}.{m}': f'api/{m}.html' for _, m in mods}
    for p, nb in nbs:
        (Path(_stage.name) / p.name).write_text(json.dumps(process(nb, pages), indent=1), encoding='utf-8')
    _modules = [(m, p.name) for p, m in mods]
    config['nav'] = [{'Home': 'index.ipynb'},
                     {'Notebooks': [{title_of(nb, p.stem): p.name} for p, nb in nbs[1:]]},
                     {'API reference': ['api/index.md'] + [{f'{LIB}.{m}': f'api/{m}.md'} for _, m in mods]}]
    return config

@event_priority(100)  # before mkdocs-jupyter, which claims the .ipynb files
def on_files(files, config):
    "Add the staged notebooks and the generated API pages to the site's files."
    for p in sorted(Path(_stage.name).glob('*.ipynb')):
        files.append(File(p.name, _stage.name, config['site_dir'], config['use_directory_urls']))
    index = ['# API reference\n', f'Generated from the docstrings and docments comments of the `{LIB}` modules.\n',
             '| module | notebook |', '|---|---|']
    for m, nb in _modules:
        files.append(File.generated(config, f'api/{m}.md', content=api_page(m, nb)))
        index.append(f'| [{LIB}.{m}]({m}.md) | [{Path(nb).stem}](../{nb}) |')
    files.append(File.generated(config, 'api/index.md', content='\n'.join(index) + '\n'))
    return files

_re_mathjax = re.compile(r'<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->', re.S)

_re_heading = re.compile(r'<h([1-6])([^>]*?)\bid="([^"]*)"([^>]*)>(.*?)</h\1>', re.S)

def headings_toc(html:str) -> tuple[str, list[dict]]:
    "`html` with unique heading ids, and the table-of-contents tokens of its headings (ids as in the page)."
    seen, tokens, stack = {}, [], []
    def sub(m):
        level, hid = int(m.group(1)), m.group(3)
        n = seen.get(hid, 0); seen[hid] = n + 1
        body = m.group(5)
        if n: hid, body = f'{hid}_{n}', body.replace(f'href="#{hid}"', f'href="#{hid}_{n}"')  # its ¶ link too
        name = re.sub(r'<[^>]+>', '', body).replace('\u00b6', '').strip()
        tok = {'level': level, 'id': hid, 'name': name, 'children': []}
        while stack and stack[-1]['level'] >= level: stack.pop()
        (stack[-1]['children'] if stack else tokens).append(tok); stack.append(tok)
        return f'<h{m.group(1)}{m.group(2)}id="{hid}"{m.group(4)}>{body}</h{m.group(1)}>'
    return _re_heading.sub(sub, html), tokens

_re_nblink = re.compile(r'href="([\w.-]+)\.ipynb(#[^"]*)?"')

def nb_links(html:str, names) -> str:
    "Markdown links between notebooks (`[x](x.ipynb)`, which work on GitHub and in Jupyter) pointed at their pages."
    return _re_nblink.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"' if m.group(1) in names else m.group(0), html)

def on_page_content(html, page, config, files):
    "Notebook pages: links between notebooks to pages; no MathJax loader (math is MathML); a TOC from the page's ids."
    if not page.file.src_uri.endswith('.ipynb'): return html
    from mkdocs.structure.toc import get_toc
    html = nb_links(html, {p.stem for p in NBS.glob('*.ipynb')})
    html, tokens = headings_toc(_re_mathjax.sub('', html))
    page.toc = get_toc(tokens)
    return html

_loaded_rels = {'stylesheet', 'icon', 'preload', 'modulepreload', 'manifest'}

class _Refs(HTMLParser):
    "Collect the ids, links and loaded resources of one HTML page."
    def __init__(self):
        super().__init__(); self.ids, self.links, self.loads = set(), [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        if tag == 'a' and a.get('href'): self.links.append(a['href'])
        if tag in ('img', 'script', 'iframe') and a.get('src'): self.loads.append(a['src'])
        if tag == 'link' and a.get('href') and set((a.get('rel') or '').split()) & _loaded_rels:
            self.loads.append(a['href'])

def check_site(site:Path, base:str='/') -> list[str]:
    "Problems in the built `site` (served under the URL path `base`): broken internal links or anchors, network loads."
    site, pages = site.resolve(), {}
    for f in site.rglob('*.html'):
        r = _Refs(); r.feed(f.read_text(encoding='utf-8')); pages[f] = r
    problems = []
    for f, r in sorted(pages.items()):
        rel = f.relative_to(site)
        for url in r.loads:
            if urlsplit(url).scheme in ('http', 'https') or url.startswith('//'):
                problems.append(f'{rel}: loads {url} from the network')
        for url in r.links + [u for u in r.loads if not u.startswith('data:')]:
            u = urlsplit(url)
            if u.scheme or u.netloc or url.startswith(('mailto:', 'javascript:')): continue
            path = unquote(u.path)
            if path.startswith('/'):  # site-absolute (the 404 page): relative to the site root below `base`
                if not path.startswith(base): problems.append(f'{rel}: link {url} outside the site {base}'); continue
                target = (site / path[len(base):]).resolve()
            else: target = (f.parent / path).resolve() if path else f
            if target.is_dir(): target = target / 'index.html'
            if not target.exists() or site.resolve() not in [target, *target.parents]:
                problems.append(f'{rel}: broken link {url}'); continue
            if u.fragment and target.suffix == '.html' and unquote(u.fragment) not in pages[target].ids:
                problems.append(f'{rel}: missing anchor {url}')
    return problems

def on_post_build(config):
    "Check the built site's internal links and its offline-ness (warnings, so `--strict` fails on them)."
    site = Path(config['site_dir']).resolve()
    problems = check_site(site, urlsplit(config['site_url'] or '/').path or '/')
    for p in problems: log.warning(p)
    log.info(f'checked the links of {len(list(site.rglob("*.html")))} pages: {len(problems)} problems')

def on_shutdown():
    "Remove the staged notebooks."
    global _stage
    if _stage is not None: _stage.cleanup(); _stage = None
