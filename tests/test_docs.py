"""The documentation is checked like code: the generated parts are current (tools/make_docs.py),
every relative link and #anchor resolves as GitHub renders it, every `§N` the code cites exists,
and every command line in a code block passes the real argument parsing and configuration
checks (without touching data: paths and placeholders such as CKPT need not exist)."""
import contextlib
import dataclasses
import glob
import io
import os
import re
import shlex

import pytest

import config
from run.config import check_network
from training.build import check_batch_split
from tools import make_docs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(['README.md', 'data/README.md', 'output/README.md'] + [
    os.path.relpath(path, REPO) for path in glob.glob(os.path.join(REPO, 'docs', '*.md'))])
FENCE = re.compile(r'^\s*```')
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')


def read(rel):
    with open(os.path.join(REPO, rel), encoding='utf-8') as f:
        return f.read()


def prose_lines(text):
    """(line number, line) of the lines outside code blocks (fenced or indented 4 spaces)."""
    inside = False
    for number, line in enumerate(text.split('\n'), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside and not line.startswith('    '):
            yield number, line


def code_lines(text):
    """(line number, command) of the lines of code blocks, backslash continuations joined."""
    inside, pending, start = False, '', 0
    for number, line in enumerate(text.split('\n'), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not (inside or line.startswith('    ')):
            continue
        if not pending:
            start = number
        if line.rstrip().endswith('\\'):
            pending += line.rstrip()[:-1] + ' '
            continue
        yield start, pending + line
        pending = ''


# ---- links and anchors ------------------------------------------------------------------------

def github_slug(heading):
    """The anchor GitHub gives a heading: the text as rendered (no code marks, links as their
    text), lower case, punctuation dropped (letters, digits, _, - and spaces kept), each space
    a hyphen."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)
    text = text.replace('`', '').replace('*', '')
    return re.sub(r'[^\w\- ]', '', text.lower()).replace(' ', '-')


def anchors(rel):
    """Every anchor of a page: its headings' slugs (repeats numbered -1, -2...) and HTML ids."""
    seen, found = {}, set()
    for _, line in prose_lines(read(rel)):
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            found.add(slug if slug not in seen else f'{slug}-{seen[slug]}')
            seen[slug] = seen.get(slug, 0) + 1
        found.update(re.findall(r'<a (?:id|name)="([^"]+)"', line))
    return found


def test_github_slug_follows_githubs_rule():
    assert github_slug('10. Published numbers') == '10-published-numbers'
    assert github_slug("Root depth from the hand's size") == 'root-depth-from-the-hands-size'
    assert github_slug('8. Evaluation (the leaderboard\'s definitions)') == \
        '8-evaluation-the-leaderboards-definitions'
    assert github_slug('`cpu_demo`') == 'cpu_demo'
    assert github_slug('Clusters: several GPUs, nodes, SLURM') == \
        'clusters-several-gpus-nodes-slurm'


@pytest.mark.parametrize('page', PAGES)
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for number, line in prose_lines(read(page)):
        for target in LINK.findall(re.sub(r'`[^`]*`', '', line)):
            if re.match(r'[a-z]+:', target):
                continue  # http(s), mailto: external
            path, _, anchor = target.partition('#')
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(os.path.join(REPO, resolved)):
                broken.append(f'{page}:{number}: {target}: no file {resolved}')
            elif anchor and anchor not in anchors(resolved):
                broken.append(f'{page}:{number}: {target}: no heading #{anchor} in {resolved}')
    assert not broken, '\n'.join(broken)


# ---- section citations --------------------------------------------------------------------------

CITATION = re.compile(r'(?:(\w+)\.md )?§ ?(\d+(?:-\d+)?(?:, ?\d+(?:-\d+)?)*)')


def numbered_sections(rel):
    return {int(m) for m in re.findall(r'^## (\d+)\. ', read(rel), flags=re.M)}


def cited_sections(text, default):
    """[(page, section)] of every `§N`, `§N-M`, `§N, M` in text; `ho3d.md §N` cites
    docs/ho3d.md, `method.md §N` and a bare `§N` docs/method.md (or `default`)."""
    found = []
    for name, numbers in CITATION.findall(text):
        page = {'ho3d': 'docs/ho3d.md', 'method': 'docs/method.md'}.get(name.lower(), default)
        for part in numbers.replace(' ', '').split(','):
            low, _, high = part.partition('-')
            found += [(page, n) for n in range(int(low), int(high or low) + 1)]
    return found


def source_files():
    """The project's .py files (relative to the repository), its Makefile and SLURM script."""
    return [os.path.relpath(path, REPO) for path in glob.glob(os.path.join(REPO, '**', '*.py'),
                                                              recursive=True)
            if '/.' not in os.path.relpath(path, REPO) and 'site-packages' not in path] + [
        'Makefile', 'tools/slurm/train.sbatch']


def test_every_cited_section_exists():
    missing = []
    for rel in source_files() + PAGES:
        default = rel if rel in ('docs/ho3d.md', 'docs/method.md') else 'docs/method.md'
        for page, number in cited_sections(read(rel), default):
            if number not in numbered_sections(page):
                missing.append(f'{rel}: cites {page} §{number}, which has no section {number}')
    assert not missing, '\n'.join(sorted(set(missing)))


# Paths of the project's own files (e.g. `wild/outputs.py`); a component in capitals (NAME,
# CKPT), `*` or `<` marks a placeholder.
CITED_PATH = re.compile(r'(?<![\w/.-])((?:manopth|utils|model|dataset|synthetic|inference|training|'
                        r'wild|tools|benchmarks|tests|docs)/(?:[\w.*<>-]+/)*[\w.*<>-]+'
                        r'\.(?:py|md|sbatch|txt|json|png))(?![\w/])')
# `docs/PAGE.md, "Heading"`, `PAGE.md "Heading"` (in docs/: beside the page), `README, "Heading"`
CITED_HEADING = re.compile(r'((?:docs/)?[\w-]+\.md|README),? \(?"([^"]+)"')


def cited_paths(text):
    """(line number, path) of every project file path in text, placeholders left out."""
    return [(number, path) for number, line in enumerate(text.split('\n'), 1)
            for path in CITED_PATH.findall(line)
            if not re.search(r'[*<]|(?:^|/)[A-Z_]+(?:\.\w+)?$|/[A-Z_]+/', path)]


def cited_headings(rel, text):
    """(page, heading) of every `PAGE.md, "Heading"` citation in the file `rel`; lines are
    joined first (comment marks dropped), as a citation may wrap."""
    flat = re.sub(r'\s*\n\s*(?:#+(?!\w)|//)?\s*', ' ', text)
    found = []
    for page, heading in CITED_HEADING.findall(flat):
        if page == 'README':
            page = 'README.md'
        elif not page.startswith('docs/'):
            page = os.path.join(os.path.dirname(rel) if rel.startswith('docs/') else 'docs', page)
        found.append((os.path.normpath(page), heading))
    return found


def cited_by():
    """The files whose citations are checked: the sources and the pages, but not this file
    (its examples cite missing files on purpose)."""
    return [rel for rel in source_files() + PAGES if rel != 'tests/test_docs.py']


def test_every_cited_file_exists():
    missing = [f'{rel}:{number}: {path}' for rel in cited_by()
               for number, path in cited_paths(read(rel))
               if not os.path.exists(os.path.join(REPO, path))]
    assert not missing, 'no such file:\n' + '\n'.join(missing)


def test_every_cited_heading_exists():
    missing = [f'{rel}: {page}, "{heading}"' for rel in cited_by()
               for page, heading in cited_headings(rel, read(rel))
               if not os.path.isfile(os.path.join(REPO, page))
               or github_slug(heading) not in anchors(page)]
    assert not missing, 'no such page or heading:\n' + '\n'.join(missing)


def test_cited_files_and_headings_are_read_as_written():
    text = ('see wild/outputs.py and utils/render.py, docs/measured/NAME.json,\n'
            'tests/wild/test_*.py; the recipe (docs/development.md, "Adding a\n'
            '# data set") and README, "SLURM" and ho3d.md "5. Submission"')
    assert cited_paths(text) == [(1, 'wild/outputs.py'), (1, 'utils/render.py'),
                                 (2, 'docs/development.md')]
    assert cited_headings('model/x.py', text) == [
        ('docs/development.md', 'Adding a data set'), ('README.md', 'SLURM'),
        ('docs/ho3d.md', '5. Submission')]
    assert github_slug('Adding a data set') in anchors('docs/development.md')
    assert github_slug('SLURM') not in anchors('README.md')


def test_citations_are_read_as_written():
    assert cited_sections('docs/method.md §1-3, 7 and ho3d.md §4', 'X') == [
        ('docs/method.md', 1), ('docs/method.md', 2), ('docs/method.md', 3),
        ('docs/method.md', 7), ('docs/ho3d.md', 4)]
    assert cited_sections('as published (§11).', 'docs/method.md') == [('docs/method.md', 11)]


# ---- command lines ------------------------------------------------------------------------------

ENTRY_SCRIPTS = ('train.py', 'test.py', 'demo.py')
# `python -m MODULE` of these packages is checked with MODULE's own parser (its main() parses
# its arguments before anything else: tools/make_docs.py reads the parser there).
PACKAGES = ('tools', 'benchmarks', 'utils', 'dataset', 'synthetic', 'inference', 'training',
            'wild', 'model', 'manopth')
PYTHON = re.compile(r'(?:\S*/)?python3?')  # python, python3, .venv/bin/python
INLINE_CODE = re.compile(r'`([^`]+)`')


def prose_paragraphs(text):
    """(first line number, text) of every run of consecutive non-blank prose lines."""
    runs, last = [], None
    for number, line in prose_lines(text):
        if not line.strip():
            last = None
            continue
        if last is not None and number == last + 1:
            runs[-1][1].append(line)
        else:
            runs.append((number, [line]))
        last = number
    return [(start, '\n'.join(lines)) for start, lines in runs]


def inline_code(text):
    """(line number, text) of every `code span` of the prose (a span may cross lines)."""
    return [(start + paragraph.count('\n', 0, match.start()), ' '.join(match.group(1).split()))
            for start, paragraph in prose_paragraphs(text)
            for match in INLINE_CODE.finditer(paragraph)]


def commands(pages=PAGES):
    """[(page:line, script, args, world size)] of every documented run of an entry script
    (python, torchrun) in a code block, and of a module of PACKAGES (python -m) in a code
    block or a `code span` of the prose (there, name a module without `python -m`)."""
    found = []
    for page in pages:
        text = read(page)
        lines = [(n, line, True) for n, line in code_lines(text)]
        for number, line, in_block in lines + [(n, span, False) for n, span in inline_code(text)]:
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue  # not a shell line (e.g. Python source)
            for i, word in enumerate(words):
                after_python = i > 0 and PYTHON.fullmatch(words[i - 1])
                if in_block and word in ENTRY_SCRIPTS and (after_python or words[0] == 'torchrun'):
                    found.append((f'{page}:{number}', word, words[i + 1:], world_size(words[:i])))
                elif (word == '-m' and after_python and i + 1 < len(words)
                      and words[i + 1].split('.')[0] in PACKAGES):
                    found.append((f'{page}:{number}', words[i + 1], words[i + 2:], 1))
    return found


def world_size(launcher):
    """Processes of a `torchrun --nnodes N --nproc_per_node M` prefix (1 without torchrun)."""
    values = dict(re.findall(r'--(nnodes|nproc[-_]per[-_]node)[= ](\d+)', ' '.join(launcher)))
    per_node = next((int(v) for k, v in values.items() if k.startswith('nproc')), 1)
    return int(values.get('nnodes', 1)) * per_node


FORWARDS_TO_DEMO = {'benchmarks.demo_memory'}  # runs demo.py with the options it does not know


def check_command(script, args, world):
    """Raise (config.ConfigError, SystemExit from argparse) if the command would be refused
    before it touches any file."""
    if script in ENTRY_SCRIPTS:
        rest = args
        if script == 'demo.py':
            _, rest = make_docs.script_parser('demo.py')[0].parse_known_args(args)
        cfg = config.resolve(rest)
        if script != 'train.py' and not (cfg.checkpoint or cfg.onnx):
            raise config.ConfigError(f'{script} needs --checkpoint or --onnx')
        check_network(dataclasses.replace(cfg, device='cpu'))  # documented GPU runs too
        check_batch_split(cfg, world)
        return
    parser, takes_config_overrides = make_docs.script_parser(script)
    if script in FORWARDS_TO_DEMO:  # its other options are demo.py's (and config fields)
        _, rest = parser.parse_known_args(args)
        # the benchmark gives demo.py its --input
        _, rest = make_docs.script_parser('demo.py')[0].parse_known_args(['--input', 'x', *rest])
        config.resolve(rest)
    elif takes_config_overrides:
        _, rest = parser.parse_known_args(args)
        config.resolve(rest)
    else:
        parser.parse_args(args)


COMMANDS = commands()


def test_the_docs_show_the_tasks_commands():
    scripts = {script for _, script, _, _ in COMMANDS}
    assert set(ENTRY_SCRIPTS) <= scripts
    assert any(script == 'train.py' and '--resume' in args for _, script, args, _ in COMMANDS)
    assert any(script == 'train.py' and 'HO3D' in args and '--preset' in args
               for _, script, args, _ in COMMANDS)


@pytest.mark.parametrize('where, script, args, world', COMMANDS,
                         ids=[f'{where}:{script}' for where, script, _, _ in COMMANDS])
def test_documented_command_parses_and_validates(where, script, args, world):
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            check_command(script, args, world)
    except (config.ConfigError, SystemExit) as err:
        pytest.fail(f'{where}: {script} {shlex.join(args)}\n  refused: {err} {stderr.getvalue()}')


def test_a_refused_command_is_caught(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('    python train.py --dataset HO4D --eval_interval 1 \\\n'
                    '        --data_root data/HO3D\n'
                    '    torchrun --nproc_per_node 3 train.py --batch_size 64\n'
                    '    python demo.py --checkpoint CKPT\n')
    page.write_text(page.read_text() +
                    '    .venv/bin/python -m tools.video_strip --out strip.png\n'
                    '    python -m pytest -q tests/test_docs.py\n\n'
                    'A figure made with `python -m tools.mano_fit_figure\n'
                    '--data_root DATA` (`python train.py` is a mention, not checked).\n')
    found = commands([str(page)])
    assert [(where.split(':')[-1], script, world) for where, script, _, world in found] == [
        ('1', 'train.py', 1), ('3', 'train.py', 3), ('4', 'demo.py', 1),
        ('5', 'tools.video_strip', 1), ('8', 'tools.mano_fit_figure', 1)]
    assert found[-1][2] == ['--data_root', 'DATA']  # the span across two lines
    for _, script, args, world in found:
        with pytest.raises((config.ConfigError, SystemExit)), \
                contextlib.redirect_stderr(io.StringIO()):
            check_command(script, args, world)


def test_modules_that_pass_unknown_options_to_config_are_told_apart():
    assert make_docs.script_parser('demo.py')[1]
    assert make_docs.script_parser('tools.export_onnx')[1]
    assert not make_docs.script_parser('tools.fit_mano')[1]
    with pytest.raises(config.ConfigError), contextlib.redirect_stderr(io.StringIO()):
        check_command('tools.export_onnx', ['--checkpoint', 'CKPT', '--out', 'x.onnx',
                                           '--no_such_field', '1'], 1)
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        check_command('tools.fit_mano', ['--pred', 'p.json', '--mano_root', 'M', '--out', 'f.json',
                                         '--no_such_option', '1'], 1)


# ---- generated parts ----------------------------------------------------------------------------

def test_generated_parts_are_current():
    with contextlib.redirect_stdout(io.StringIO()):
        pages = make_docs.generated_pages()
    stale = [rel for rel, text in pages.items() if read(rel) != text]
    assert not stale, f'out of date: {stale}; run make docs'
    assert '0.65 cm' in pages['README.md']  # the published numbers, from method.md §10


def test_a_measured_report_becomes_a_table(tmp_path):
    (tmp_path / 'demo.json').write_text(
        '{"date": "2026-12-05", "load_average": [1.0, 0.5, 0.2], '
        '"scores": {"xyz_al_mean3d": 1.5, "mesh_al_mean3d": 1.75}, '
        '"mean_hand": {"xyz_al_mean3d": 4.5, "mesh_al_mean3d": 4.875}}')
    text = make_docs.measured_table('demo', folder=str(tmp_path))
    assert 'date: `2026-12-05`;' in text and 'command: `not recorded`;' in text
    assert '| | scores | mean_hand |' in text
    assert '| xyz_al_mean3d | 1.5 | 4.5 |' in text and '| mesh_al_mean3d | 1.75 | 4.875 |' in text
    assert 'No measurement' in make_docs.measured_table('absent', folder=str(tmp_path))
    (tmp_path / 'nested.json').write_text('{"scores": {"sar": {"f_al_score_5": 0.25}, '
                                          '"mean_hand": {"f_al_score_5": 0.0078125}}}')
    assert '| f_al_score_5 | 0.25 | 0.007812 |' in make_docs.measured_table(
        'nested', folder=str(tmp_path))


def test_the_index_names_each_reports_origin_and_what_it_lacks(tmp_path):
    (tmp_path / 'a.json').write_text(
        '{"command": "python -m benchmarks.root_depth --data_root D", "date": "2026-12-07", '
        '"commit": "0123456789abcdef", "dirty": true, "cpu_model": "CPU X", "cpu_flags": "avx2", '
        '"logical_cores": 2, "precision": "fp32", "load_average_start": "1.0 1 1", '
        '"load_average_end": "2.0 2 2"}')
    (tmp_path / 'b.json').write_text('{"date": "2026-12-02"}')
    rows = make_docs.measured_index(folder=str(tmp_path)).split('\n')
    assert rows[2] == ('| [a.json](measured/a.json) | `python -m benchmarks.root_depth --data_root D` '
                       '| 2026-12-07 | 0123456789 (uncommitted changes) | CPU X, 2 logical cores; '
                       'avx2 | fp32 | 1.0 1 1; 2.0 2 2 |')
    assert rows[3].startswith('| [b.json](measured/b.json) | `not recorded` | 2026-12-02 | not recorded |')
    assert 'precision: `not recorded`;' in make_docs.measured_table('b', folder=str(tmp_path))


def test_performance_page_stays_a_manual():
    # A manual of what to expect and how to measure it, not a diary (history belongs in git).
    with open(os.path.join(REPO, 'docs', 'performance.md')) as f:
        lines = f.read().splitlines()
    assert len(lines) <= 250, f'docs/performance.md has {len(lines)} lines (at most 250)'
