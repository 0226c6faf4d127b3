"""The documentation site (`mkdocs build -f nbs/mkdocs.yml`): its page order, its link checker, and the built site
opened in headless Chromium (Debian's `chromium`, driven by Playwright without a browser download)."""
import http.server, importlib.util, json, os, subprocess, sys, threading
from functools import partial
from pathlib import Path

import pytest

pytest.importorskip('mkdocs')
pytest.importorskip('mkdocs_jupyter')
ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
spec = importlib.util.spec_from_file_location('mkdocs_hooks', NBS / 'mkdocs_hooks.py')
hooks = importlib.util.module_from_spec(spec); spec.loader.exec_module(hooks)
CHROMIUM = os.environ.get('EB_STUDY_CHROMIUM', '/usr/bin/chromium')

def _nb(path:Path, title:str='T'): path.write_text(json.dumps({'cells': [{'cell_type': 'markdown', 'source': f'# {title}', 'metadata': {}}],
                                                   'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}))

def test_notebook_order(tmp_path):
    "Index first, then nbdev's file-name order, so a notebook added later (05d_, 16_) appears without configuration."
    for n in ['16_new', '05_prune', '05d_new', 'index', '05a_sparse', '00_masking', '_private']: _nb(tmp_path / f'{n}.ipynb')
    assert [p.stem for p in hooks.notebooks(tmp_path)] == ['index', '00_masking', '05_prune', '05a_sparse', '05d_new', '16_new']

def test_process_directives():
    "`#| hide` cells are dropped, directive lines removed, LaTeX becomes MathML, code spans naming a page link to it."
    nb = {'cells': [{'cell_type': 'code', 'source': '#| hide\nx = 1', 'outputs': [], 'metadata': {}},
                    {'cell_type': 'code', 'source': '#| export\ndef f(): pass', 'outputs': [], 'metadata': {}},
                    {'cell_type': 'markdown', 'source': 'see `00_masking`, `x`, $\\gamma$ and `$p$`', 'metadata': {}}]}
    cells = hooks.process(nb, {'00_masking': '00_masking.html'})['cells']
    assert [c['source'] for c in cells[:1]] == ['def f(): pass']
    md = cells[1]['source']
    assert '[`00_masking`](00_masking.html)' in md and '`x`' in md and '<math' in md and '`$p$`' in md

def test_links_between_notebooks_point_at_pages():
    html = '<a href="16a_lightning.ipynb">x</a> <a href="16b_hf.ipynb#resume">y</a> <a href="other.ipynb">z</a>'
    assert hooks.nb_links(html, {'16a_lightning', '16b_hf'}) == \
        '<a href="16a_lightning.html">x</a> <a href="16b_hf.html#resume">y</a> <a href="other.ipynb">z</a>'

def test_check_site_finds_broken_links(tmp_path):
    "The link checker reports a missing page, a missing anchor and a script from the network, and passes good links."
    (tmp_path / 'a.html').write_text('<h1 id="top">A</h1><a href="b.html#sec">ok</a><a href="#top">ok</a>')
    (tmp_path / 'b.html').write_text('<h2 id="sec">B</h2><a href="c.html">x</a><a href="a.html#nope">x</a>'
                                     '<script src="https://cdn.example.org/x.js"></script>')
    problems = hooks.check_site(tmp_path)
    assert len(problems) == 3, problems
    assert any('broken link c.html' in p for p in problems) and any('missing anchor a.html#nope' in p for p in problems)
    assert any('from the network' in p for p in problems)

def _sources() -> list[Path]:
    return [*NBS.glob('*.ipynb'), *NBS.glob('mkdocs*'), *(NBS / 'site').rglob('*'), *(ROOT / 'eb_study').glob('*.py')]

@pytest.fixture(scope='module')
def site(tmp_path_factory) -> Path:
    "The built site: `_docs/` when it is newer than every source (CI has just built it), else a fresh build."
    built = ROOT / '_docs' / 'index.html'
    if built.exists() and built.stat().st_mtime > max(p.stat().st_mtime for p in _sources()): return built.parent
    out = tmp_path_factory.mktemp('site')
    subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '-q', '-f', str(NBS / 'mkdocs.yml'), '-d', str(out)],
                   check=True, cwd=ROOT, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1', 'OMP_NUM_THREADS': '1'})
    return out

@pytest.fixture(scope='module')
def browser(request):
    "Headless Chromium and the site served by a local http.server: yields (site URL, browser)."
    if not Path(CHROMIUM).exists(): pytest.skip(f'no Chromium at {CHROMIUM} (apt-get install chromium)')
    sync_api = pytest.importorskip('playwright.sync_api')
    site = request.getfixturevalue('site')  # built only once the browser is known to be there
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox', '--disable-dev-shm-usage'])
        yield f'http://127.0.0.1:{server.server_address[1]}/', b
        b.close()
    server.shutdown()

def _open(browser, path:str):
    "Open `path` of the site; return the page and the console errors, page errors and failed requests seen."
    url, b = browser
    page, errors = b.new_page(), []
    page.on('console', lambda m: errors.append(f'console {m.type}: {m.text}') if m.type == 'error' else None)
    page.on('pageerror', lambda e: errors.append(f'page error: {e}'))
    page.on('requestfailed', lambda r: errors.append(f'request failed: {r.url}'))
    response = page.goto(url + path, wait_until='load')
    assert response.ok, f'{path}: HTTP {response.status}'
    page.wait_for_load_state('networkidle')
    return page, errors

def _images(page) -> list[list]:
    "[complete, naturalWidth] of every img of the page's content."
    return page.evaluate("Array.from(document.querySelectorAll('article img')).map(i => [i.complete, i.naturalWidth])")

def _nb_json(stem:str) -> dict: return json.loads((NBS / f'{stem}.ipynb').read_text(encoding='utf-8'))

def _shown_images(stem:str) -> int:
    "Image outputs of the notebook's cells that the site shows (after nbdev's directives)."
    cells = hooks.process(_nb_json(stem), {})['cells']
    return sum(any(k.startswith('image/') for k in o.get('data', {})) for c in cells for o in c.get('outputs', []))

def test_front_page(browser):
    page, errors = _open(browser, 'index.html')
    nb = _nb_json('index')
    summary = next(l[2:] for l in ''.join(nb['cells'][0]['source']).splitlines() if l.startswith('> '))
    text = page.inner_text('article')
    assert hooks.title_of(nb, '') in text and summary.replace('*', '') in text
    nav = set(page.eval_on_selector_all('nav a[href]', 'els => els.map(e => e.getAttribute("href"))'))
    missing = [p.stem for p in hooks.notebooks()[1:] if f'{p.stem}.html' not in nav]
    assert not missing, f'notebooks missing from the navigation: {missing}'
    assert all(c and w > 0 for c, w in _images(page))
    assert not errors, errors

def test_module_pages(browser):
    "The masking notebook (text, MathML) and its API page (every exported name, docstrings and docments comments)."
    page, errors = _open(browser, '00_masking.html')
    assert page.inner_text('article h1').strip() == hooks.title_of(_nb_json('00_masking'), '')
    assert page.locator('article math').count() > 0
    assert len(_images(page)) == _shown_images('00_masking') and all(c and w > 0 for c, w in _images(page))
    assert not errors, errors
    from fastcore.docments import docments
    import eb_study.masking as m
    page, errors = _open(browser, 'api/masking.html')
    text = page.inner_text('article')
    for name in m.__all__: assert page.locator(f'[id="{name}"]').count() == 1, name
    for arg, doc in docments(m.mask_from_scores).items():
        if doc and arg != 'return': assert doc in text, (arg, doc)
    assert m.mask_from_scores.__doc__.split('`')[0] in text
    assert not errors, errors

def test_study_page(browser):
    "The CIFAR-10 study: its text and every figure of its committed outputs, loaded."
    page, errors = _open(browser, '11_study_cifar.html')
    nb = _nb_json('11_study_cifar')
    assert page.inner_text('article h1').strip() == hooks.title_of(nb, '')
    imgs, expected = _images(page), _shown_images('11_study_cifar')
    assert expected > 0 and len(imgs) == expected, (imgs, expected)
    assert all(c and w > 0 for c, w in imgs), imgs
    assert not errors, errors

def test_search(browser):
    "The search box finds an exported function and links to its API page."
    page, errors = _open(browser, 'index.html')
    page.click('input.md-search__input')
    page.keyboard.type('mask_from_scores')  # typed as a user does: the search box reacts to key events
    hit = page.locator('.md-search-result__item a').first
    hit.wait_for(timeout=15_000)
    assert 'api/masking.html' in hit.get_attribute('href')
    assert not errors, errors
