"""The layering of the code (docs/development.md): imports flow one way.

    manopth/ -> utils/ -> model/, dataset/ -> inference/ -> training/, wild/ -> scripts
                                  inference/, training/, config -> run/ (run set-up) -> scripts
    manopth/ -> utils/ -> model/, dataset/ -> synthetic/ (the generators) -> tools/, benchmarks/

Every module's imports are parsed (also those inside functions); a violation names the file,
the line and the rule it breaks. The rules:
- each package imports only the packages of its own layer or the layers below it;
- `manopth/` stands alone (it is the manopth API); `utils/` imports no `model/`, `dataset/`;
- library code never imports `config`: only run/ (which resolves a run's configuration) and
  the scripts do; the library takes plain values (a resolved Config object included);
- every top-level package or module has its place in ALLOWED (a new one declares its layer);
- no script is imported by another module (train.py, test.py, demo.py and every module of
  tools/ and benchmarks/ with an `if __name__ == '__main__':` block); only tests may import
  them. Library modules may carry a command line of their own (`python -m synthetic.standin`,
  `python -m dataset.freihand.eval`): those are used as libraries too;
- nothing outside `tests/` imports `tests`;
- a module run by another interpreter (OWN_INTERPRETER: wild/detector_worker.py, run by the
  detector's environment, which holds numpy and mediapipe but no torch and none of the project)
  imports only the standard library and what that environment holds, and no module imports it.

And the size rules: `utils/` holds shared foundations only, grouped by concern, with at most
MAX_UTILS_ENTRIES top-level modules and packages; no function of the library or the scripts is
longer than MAX_FUNCTION_LINES.
"""
import ast
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What each top-level package (or top-level module) may import from the project.
BASE = {'manopth', 'utils', 'model', 'dataset'}
ENTRY = BASE | {'inference', 'training', 'wild', 'config', 'run'}
ALLOWED = {
    'manopth': {'manopth'},
    'utils': {'manopth', 'utils'},
    'model': {'manopth', 'utils', 'model'},
    'dataset': {'manopth', 'utils', 'dataset'},
    'inference': BASE | {'inference'},
    'training': BASE | {'inference', 'training'},
    'wild': BASE | {'inference', 'wild'},
    'run': BASE | {'inference', 'training', 'config', 'run'},  # sets runs up: reads config.py
    'synthetic': BASE | {'synthetic'},  # the generators: no entry layer, no config
    'config': {'utils', 'dataset'},  # ConfigError (utils.errors); the data sets' fields
    'train': ENTRY,
    'test': ENTRY,
    'demo': ENTRY,
    'app': ENTRY,
    'tools': ENTRY | {'synthetic', 'tools'},
    'benchmarks': ENTRY | {'synthetic', 'benchmarks'},
}
SCRIPTS_AT_TOP = {'train', 'test', 'demo', 'app'}
# Modules run as a process by another interpreter: what each may import besides the standard
# library (its environment's packages).
OWN_INTERPRETER = {'wild.detector_worker': {'numpy', 'mediapipe'}}


def project_modules():
    """{dotted module name: path} of every project .py file outside tests/ and the venv."""
    modules = {}
    for folder, dirs, files in os.walk(REPO):
        rel = os.path.relpath(folder, REPO)
        top = rel.split(os.sep)[0]
        if rel != '.' and (top.startswith('.') or top in ('tests', 'output', 'data', 'docs')
                           or '__pycache__' in rel):
            dirs[:] = []
            continue
        for name in files:
            if name.endswith('.py'):
                parts = [] if rel == '.' else rel.split(os.sep)
                stem = name[:-3]
                if stem != '__init__':
                    parts.append(stem)
                modules['.'.join(parts)] = os.path.join(folder, name)
    return modules


def imports_of(path):
    """[(line, dotted name)] of every import statement in the file."""
    tree = ast.parse(open(path).read(), filename=path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from dataset.freihand import eval` imports the module dataset.freihand.eval
            found += [(node.lineno, f'{node.module}.{alias.name}') for alias in node.names]
    return found


def is_script(name, path):
    if name in SCRIPTS_AT_TOP:
        return True
    if name.split('.')[0] not in ('tools', 'benchmarks'):
        return False
    tree = ast.parse(open(path).read(), filename=path)
    for node in tree.body:
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name) and node.test.left.id == '__name__'):
            return True
    return False


def violations(modules):
    scripts = {name for name, path in modules.items() if is_script(name, path)}
    found = []
    for name, path in sorted(modules.items()):
        own = name.split('.')[0]
        rel = os.path.relpath(path, REPO)
        for line, target in imports_of(path):
            top = target.split('.')[0]
            if top == 'tests':
                found.append(f'{rel}:{line}: imports {target}: nothing outside tests/ imports tests')
            elif top in ALLOWED and top not in ALLOWED[own]:
                found.append(f'{rel}:{line}: imports {target}: {own}/ may import only '
                             f'{sorted(ALLOWED[own])}')
            elif target in scripts and target != name:
                found.append(f'{rel}:{line}: imports the script {target}: no script is imported '
                             f'by another module (move the shared code into a library module)')
    return found


def test_imports_flow_one_way():
    modules = project_modules()
    assert len(modules) > 50 and 'train' in modules, 'project_modules found too little'
    undeclared = sorted({name.split('.')[0] for name in modules} - set(ALLOWED))
    assert not undeclared, (f'top-level packages or modules without a layer in '
                            f'tests/test_layout.py ALLOWED: {undeclared}')
    problems = violations(modules)
    assert not problems, 'layering violations:\n' + '\n'.join(problems)


def test_a_module_of_another_interpreter_imports_only_its_environment():
    modules = project_modules()
    problems = []
    for name, path in sorted(modules.items()):
        rel = os.path.relpath(path, REPO)
        for line, target in imports_of(path):
            top = target.split('.')[0]
            if name in OWN_INTERPRETER and not (top in sys.stdlib_module_names
                                                or top in OWN_INTERPRETER[name]):
                problems.append(f'{rel}:{line}: imports {target}: its interpreter has only the '
                                f'standard library and {sorted(OWN_INTERPRETER[name])}')
            elif target in OWN_INTERPRETER and name != target:
                problems.append(f'{rel}:{line}: imports {target}, which runs in another '
                                f'interpreter (start it as a process)')
    assert set(OWN_INTERPRETER) <= set(modules), sorted(set(OWN_INTERPRETER) - set(modules))
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('source, message', [
    ('from utils.files.atomic import atomic_open\n', 'manopth/ may import only'),
    ('import config\n', 'manopth/ may import only'),
    ('def f():\n    from tests.dataset.conftest import make_freihand\n', 'nothing outside tests/'),
])
def test_a_violation_is_named_with_file_and_line(tmp_path, source, message):
    # A stand-in manopth module with a forbidden import: the check must catch it, in a function too.
    path = tmp_path / 'io.py'
    path.write_text(source)
    problems = violations({'manopth.io': str(path)})
    assert problems and message in problems[0] and 'io.py:' in problems[0], problems


def test_importing_a_script_is_a_violation(tmp_path):
    script = tmp_path / 'run.py'
    script.write_text("if __name__ == '__main__':\n    pass\n")
    user = tmp_path / 'other.py'
    user.write_text('x = 1\n\nfrom benchmarks import run\n')
    problems = violations({'benchmarks.run': str(script), 'benchmarks.other': str(user)})
    assert problems == [f'{os.path.relpath(user, REPO)}:3: imports the script benchmarks.run: no '
                        f'script is imported by another module (move the shared code into a '
                        f'library module)']


MAX_UTILS_ENTRIES = 12
MAX_UTILS_CODE_LINES = 2600  # issue 33: shared foundations only, no data set's code
MAX_SUPPORT_CODE_LINES = 2600  # benchmarks/ + tools/ (issue 33; 3,099 before it)
MAX_FUNCTION_LINES = 80
DATA_SET_NAMES = ('freihand', 'ho3d', 'custom')  # the data sets' packages (dataset/<name>/)
GENERIC_CODE = ('training', 'inference', 'wild', 'run', 'utils', 'model', 'config.py')


def test_utils_holds_few_top_level_entries():
    entries = sorted(name[:-3] if name.endswith('.py') else name
                     for name in os.listdir(os.path.join(REPO, 'utils'))
                     if name != '__init__.py' and (name.endswith('.py') or os.path.isfile(
                         os.path.join(REPO, 'utils', name, '__init__.py'))))
    assert len(entries) <= MAX_UTILS_ENTRIES, f'utils/ has {len(entries)} top-level entries: {entries}'


def code_lines(path):
    """Lines of a Python file that are neither blank nor comments (docstrings count)."""
    with open(path, encoding='utf-8') as f:
        return sum(1 for line in f if line.strip() and not line.strip().startswith('#'))


def test_code_lines_are_counted(tmp_path):
    path = tmp_path / 'm.py'
    path.write_text('"""Doc\n\nmore."""\n# a comment\n\nimport os  # why\n    # indented comment\nx = 1\n')
    assert code_lines(str(path)) == 4  # two docstring lines, the import, the assignment


def code_lines_under(*folders):
    """{path relative to the repository: code lines} of every .py file under `folders`."""
    return {os.path.relpath(os.path.join(folder, name), REPO): code_lines(os.path.join(folder, name))
            for top in folders for folder, _, files in os.walk(os.path.join(REPO, top))
            if '__pycache__' not in folder for name in files if name.endswith('.py')}


def test_utils_stays_within_its_code_lines():
    counts = code_lines_under('utils')
    total = sum(counts.values())
    largest = sorted(counts.items(), key=lambda item: -item[1])[:5]
    assert total <= MAX_UTILS_CODE_LINES, (f'utils/ holds {total} code lines, over '
                                           f'{MAX_UTILS_CODE_LINES}; largest: {largest}. utils/ keeps '
                                           'shared foundations: the code of a data set goes in dataset/<name>/')


def test_support_code_stays_in_proportion():
    """benchmarks/ + tools/ (issue 33): merge overlapping scripts rather than add beside them."""
    counts = code_lines_under('benchmarks', 'tools')
    total = sum(counts.values())
    largest = sorted(counts.items(), key=lambda item: -item[1])[:5]
    assert total <= MAX_SUPPORT_CODE_LINES, (f'benchmarks/ + tools/ hold {total} code lines, over '
                                             f'{MAX_SUPPORT_CODE_LINES}; largest: {largest}')


def test_generic_code_imports_no_data_set_package():
    """training/, inference/, wild/, run/, utils/ and config.py reach a data set through the registry
    (dataset.entry(name)), never by importing its package."""
    offenders = []
    for module, path in project_modules().items():
        if not os.path.relpath(path, REPO).startswith(GENERIC_CODE):
            continue
        for line, name in imports_of(path):
            parts = name.split('.')
            if len(parts) > 1 and parts[0] == 'dataset' and parts[1] in DATA_SET_NAMES:
                offenders.append(f'{os.path.relpath(path, REPO)}:{line} imports {name}')
    assert not offenders, '\n'.join(offenders)


def names_defined(path):
    """[(line, name)] of what a module defines: functions, classes, arguments, assigned names
    and attributes, class fields. Comments, docstrings and string values are not names."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((node.lineno, node.name))
        elif isinstance(node, ast.arg):
            found.append((node.lineno, node.arg))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            found.append((node.lineno, node.attr))
    return found


def test_names_defined_are_found(tmp_path):
    path = tmp_path / 'm.py'
    path.write_text('class C:\n    ho3d_version: str = "HO3D"\n\n\ndef f(x, *, y=1):\n'
                    '    self.z = g.FREIHAND\n')
    assert sorted(name for _, name in names_defined(str(path))) == ['C', 'f', 'ho3d_version',
                                                                    'x', 'y', 'z']


def test_generic_code_defines_nothing_named_after_a_data_set():
    """No function, class, argument, variable or config field of training/, inference/, wild/,
    run/, utils/, model/ or config.py is named after a data set: a data set's options are fields
    of its own package (dataset.DatasetFields), its code is in dataset/<name>/. (Values such as
    config.py's default `dataset = 'FreiHAND'` are the user's choice, and conventions named
    after FreiHAND, its joint order and framing, are written in comments and docstrings.)"""
    offenders = []
    for module, path in project_modules().items():
        if os.path.relpath(path, REPO).startswith(GENERIC_CODE):
            offenders += [f'{os.path.relpath(path, REPO)}:{line} defines {name}'
                          for line, name in names_defined(path)
                          if any(data_set in name.lower() for data_set in DATA_SET_NAMES)]
    assert not offenders, '\n'.join(offenders)


def literal_defaults(path):
    """[(line, name, value)] of the literal defaults a module writes: function parameters'
    defaults and class fields' values (`x: int = 3`) that are constants or tuples of them."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    pairs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            positional = node.args.posonlyargs + node.args.args
            pairs += zip(positional[len(positional) - len(node.args.defaults):],
                         node.args.defaults)
            pairs += [(arg, d) for arg, d in zip(node.args.kwonlyargs, node.args.kw_defaults)
                      if d is not None]
        elif isinstance(node, ast.ClassDef):
            pairs += [(item.target, item.value) for item in node.body
                      if isinstance(item, ast.AnnAssign) and item.value is not None]
    found = []
    for target, value in pairs:
        name = target.arg if isinstance(target, ast.arg) else getattr(target, 'id', '')
        try:
            found.append((value.lineno, name, ast.literal_eval(value)))
        except ValueError:
            pass  # a name, a call: not a literal
    return found


# Defaults written once: {parameter or field name: the file that defines its default}.
DEFAULTS_DEFINED_IN = {'input_img_shape': 'utils/network_spec.py',
                       'crop_size': 'utils/network_spec.py',  # the input size, in utils/transforms
                       'depth_box': 'utils/constants.py',
                       'mano_root': 'utils/mano.py'}


def test_literal_defaults_are_found(tmp_path):
    path = tmp_path / 'm.py'
    path.write_text('def f(a, crop_size=(4, 4), *, depth_box=0.3, k=K):\n    pass\n\n\n'
                    'class C:\n    input_img_shape: tuple = (8, 8)\n    other: int = SIZE\n')
    assert literal_defaults(str(path)) == [(1, 'crop_size', (4, 4)), (1, 'depth_box', 0.3),
                                           (6, 'input_img_shape', (8, 8))]


def test_the_shared_defaults_are_written_once():
    """The default input size (utils/network_spec.py NetworkFields), depth box
    (utils/constants.DEPTH_BOX_M) and MANO folder (utils/mano.DEFAULT_MANO_ROOT) are written
    where they are defined; every other default of them names that definition (a second
    literal would drift when the first is edited). None ('not given') is no default value;
    manopth/ keeps manopth's own API."""
    offenders = []
    for module, path in project_modules().items():
        rel = os.path.relpath(path, REPO)
        offenders += [f'{rel}:{line} writes a literal default for {name!r}: name its '
                      f'definition in {DEFAULTS_DEFINED_IN[name]}'
                      for line, name, value in literal_defaults(path)
                      if name in DEFAULTS_DEFINED_IN and value is not None
                      and rel != DEFAULTS_DEFINED_IN[name] and not rel.startswith('manopth')]
    assert not offenders, '\n'.join(offenders)


def defined_functions(path):
    """[(name, first line, number of lines)] of every function and method in the file."""
    tree = ast.parse(open(path).read(), filename=path)
    return [(node.name, node.lineno, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_image_files_are_not_read_in_a_drawing_module():
    names = {name for name, _, _ in defined_functions(project_modules()['utils.vis.drawing'])}
    assert not names & {'read_image', 'save_image'}, names


def test_no_function_is_longer_than_the_limit():
    too_long = []
    for name, path in sorted(project_modules().items()):
        for function, line, length in defined_functions(path):
            if length > MAX_FUNCTION_LINES:
                too_long.append(f'{os.path.relpath(path, REPO)}:{line}: {function} has {length} lines')
    assert not too_long, (f'functions over {MAX_FUNCTION_LINES} lines (split them):\n'
                          + '\n'.join(too_long))


MAX_PARAMETERS = 8  # per function outside manopth/ (whose API is manopth's): pass small objects


def parameter_counts(path):
    """[(name, first line, parameters)] of every function in the file; self and cls are not
    counted, *args and **kwargs count one each."""
    tree = ast.parse(open(path).read(), filename=path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
            count = len(names) - (names[:1] in (['self'], ['cls'])) + (args.vararg is not None) + (
                args.kwarg is not None)
            found.append((node.name, node.lineno, count))
    return found


def test_parameter_counts_are_counted(tmp_path):
    path = tmp_path / 'm.py'
    path.write_text('def f(a, b=1, *args, c, **kw):\n    pass\n\n\nclass C:\n'
                    '    def g(self, a, /, b):\n        pass\n')
    assert parameter_counts(str(path)) == [('f', 1, 5), ('g', 6, 2)]


def test_no_function_takes_more_than_the_limit():
    too_many = []
    for name, path in sorted(project_modules().items()):
        if name.split('.')[0] == 'manopth':
            continue
        for function, line, count in parameter_counts(path):
            if count > MAX_PARAMETERS:
                too_many.append(f'{os.path.relpath(path, REPO)}:{line}: {function} takes {count}')
    assert not too_many, (f'functions with over {MAX_PARAMETERS} parameters (pass a small object):\n'
                          + '\n'.join(too_many))
