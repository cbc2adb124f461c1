"""Setting a run up from config.py: the resolved configuration (config.py, preset, command line,
a checkpoint's or ONNX file's own), its copy beside the checkpoints, the network it builds.

The layer between the library (model/, dataset/, inference/, training/, which take plain values
and never read config.py) and the scripts (train.py, test.py, demo.py, app.py, tools/,
benchmarks/), which call it first.
"""
