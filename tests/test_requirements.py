"""requirements.txt declares the torch the code needs: its floor is at least the release where
each torch API the code calls appeared, and torchvision's floor is the release paired with it."""
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# API -> the first torch release that has it (the PyTorch docs of each release; see the
# comment in requirements.txt).
FIRST_RELEASE = {
    'torch.compiler.is_compiling': (2, 3),
    'torch.amp.GradScaler': (2, 3),
    'dynamo=True': (2, 6),
}


def _floor(package):
    text = open(os.path.join(REPO, 'requirements.txt')).read()
    match = re.search(rf'^{package}>=(\d+)\.(\d+)', text, flags=re.M)
    assert match, f'requirements.txt has no {package}>= floor'
    return int(match.group(1)), int(match.group(2))


def _sources():
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith('.') and d not in ('tests', 'output', 'data')]
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                yield path, open(path, encoding='utf-8').read()


def test_the_torch_floor_covers_every_api_the_code_calls():
    torch_floor = _floor('torch')
    sources = list(_sources())
    used = {api: [os.path.relpath(path, REPO) for path, text in sources
                  if (api if '=' in api else api + '(') in text]  # calls, not mentions
            for api in FIRST_RELEASE}
    for api, files in used.items():
        if files:
            assert torch_floor >= FIRST_RELEASE[api], (
                f'{api} ({", ".join(files)}) needs torch >= {FIRST_RELEASE[api]}, but '
                f'requirements.txt says torch>={torch_floor}')
    assert any(used.values())


def test_the_torchvision_floor_is_the_release_paired_with_the_torch_floor():
    torch_major, torch_minor = _floor('torch')
    # torch 2.x ships with torchvision 0.(x + 15) (2.1/0.16 ... 2.14/0.29).
    assert torch_major == 2 and _floor('torchvision') == (0, torch_minor + 15)
