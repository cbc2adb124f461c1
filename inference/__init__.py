"""Running a trained network: the configuration of a run (with the one saved beside a
checkpoint), precision, the network of a checkpoint or an ONNX file, the loop over an evaluation
set and pred.json, the predictor of one image and box, the wrist depth from the hand's size."""
