"""The lesion segmenter (`python -m training.lesion`; usage in `train`).

Modules: `masks` (BUS-BRA lesion masks and the store's mask column), `data` (examples with masks and lesion-free
crops), `train` (patient-grouped cross-validation and the final model), `choices` (`python -m training.lesion.choices`:
a cross-validation's choices for a final model trained on its own), `boxes` (each fold's lesion boxes, read by the
crop view), `filter` (keep lesion frames of decoded clips, used by `training.prepare_data videos`).
"""
