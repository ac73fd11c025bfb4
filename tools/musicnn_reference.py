"""Reference outputs of the original musicnn TF1 graphs, for the parity test fixture.

Run once, in a throwaway environment; genreq itself never needs TensorFlow:

    .venv/bin/python tools/musicnn_reference.py patches parity.npy
    python3 -m venv tfenv && tfenv/bin/pip install tensorflow-cpu
    tfenv/bin/python tools/musicnn_reference.py tf musicnn-0.1.0-py3-none-any.whl \\
        parity.npy tests/fixtures/musicnn_parity.json

The `tf` step rebuilds the *trained* graph from each checkpoint's `.meta` file (not from
the package's models.py, which does not match MSD_vgg), keeps only the inference path,
loads the variables with TensorFlow's own checkpoint reader and evaluates the tag
probabilities and the embeddings on the patches written by the `patches` step.
"""
from __future__ import annotations

import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MODELS = {  # checkpoint folder in the wheel -> (probabilities, embedding) node names
    "MSD_musicnn": ("model/Sigmoid", "model/batch_normalization_10/batchnorm/add_1"),
    "MSD_vgg": ("model/Sigmoid", "model/Flatten/flatten/Reshape"),
}


def write_patches(out: str) -> None:
    from genreq.pretrained.musicnn import parity_patches

    np.save(out, parity_patches())


def _tf_outputs(prefix: str, nodes: tuple[str, ...], x: np.ndarray) -> list[np.ndarray]:
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    tf.compat.v1.disable_eager_execution()
    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString(Path(prefix + ".meta").read_bytes())
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(meta.graph_def, list(nodes))
    for node in graph_def.node:  # stale shape annotations from TF 1.x trip the importer
        node.attr.pop("_output_shapes", None)
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)  # the prefix, not its folder
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        feed, inits = {}, []
        for op in graph.get_operations():
            if op.type == "Placeholder":
                out = op.outputs[0]
                if out.dtype == tf.bool:
                    feed[out] = False  # is_training
                elif out.shape.rank == 3:
                    feed[out] = x
                else:
                    raise SystemExit(f"unexpected placeholder {op.name} {out.shape}")
            elif op.type in ("VariableV2", "Variable"):
                inits.append(tf.compat.v1.assign(op.outputs[0], reader.get_tensor(op.name)))
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(inits)
            return sess.run([graph.get_tensor_by_name(n + ":0") for n in nodes], feed)


def write_reference(wheel: str, patches_npy: str, out: str) -> None:
    import tensorflow as tf

    x = np.load(patches_npy).astype(np.float32)
    result = {"tensorflow": tf.__version__, "wheel": Path(wheel).name, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(wheel).extractall(tmp)
        for name, nodes in MODELS.items():
            probs, embedding = _tf_outputs(f"{tmp}/musicnn/{name}/", nodes, x)
            flat = embedding.reshape(len(x), -1)
            result["models"][name] = {
                "probs": np.round(probs.astype(np.float64), 8).tolist(),
                # the embeddings are long; a few summary numbers catch a wrong layer
                "embedding_sum": np.round(flat.sum(1).astype(np.float64), 5).tolist(),
                "embedding_head": np.round(flat[:, :8].astype(np.float64), 6).tolist(),
            }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "patches":
        write_patches(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "tf":
        write_reference(*sys.argv[2:])
    else:
        raise SystemExit(__doc__)
