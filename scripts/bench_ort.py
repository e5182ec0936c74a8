"""Times onnxruntime (CPU, 2 intra-op threads) on a model for `benches/models.rs`.

Usage: bench_ort.py MODEL INPUTS.npz BATCH REPS
Feeds the first BATCH samples of every array in INPUTS.npz whose name is a model input, runs
one warm-up and REPS timed runs, and prints one JSON line:
{"median_s": ..., "min_s": ..., "runs": REPS}.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, inputs, batch, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    data = np.load(inputs)
    names = [i.name for i in sess.get_inputs()]
    feeds = {n: data[n][:batch] for n in names if n in data.files}
    missing = [n for n in names if n not in feeds]
    if missing:
        sys.exit(f"{inputs} has no array for model input(s) {missing}")
    sess.run(None, feeds)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"median_s": float(np.median(times)), "min_s": min(times), "runs": reps}))


if __name__ == "__main__":
    main()
