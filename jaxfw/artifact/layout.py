"""The names of an artifact directory's files and their format tags (written by
`jaxfw-export`, read by `jaxfw.artifact.load`, the registry and the server).

    model.jaxexport       jax.export of predict(weights, inputs) -> outputs; symbolic batch
    weights.safetensors   the model's variables, flat "/"-joined names
    signature.json        inputs, outputs, class labels, task
    preprocessing.json    what turns raw inputs into the model's (feature scaling, table
                          columns: imputation, z-scores, one-hot vocabularies)
    reference.json        training split's per-feature distributions (drift baseline)
    card.json, MODEL_CARD.md   metrics, lineage, versions
    manifest.json         sha256 of every file above, the exporting JAX, the export time
"""

FORMAT = "jaxfw.artifact/v1"

MODEL = "model.jaxexport"
WEIGHTS = "weights.safetensors"
SIGNATURE = "signature.json"
PREPROCESSING = "preprocessing.json"
REFERENCE = "reference.json"
CARD = "card.json"
CARD_TEXT = "MODEL_CARD.md"
MANIFEST = "manifest.json"

# Every file an artifact holds besides its manifest, in the order they are written.
CONTENT_FILES = (MODEL, WEIGHTS, SIGNATURE, PREPROCESSING, REFERENCE, CARD, CARD_TEXT)
