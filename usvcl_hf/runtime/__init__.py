"""The inference runtime around the Hub files: reading clips and images (`video`, `pyav_frames`, `imaging_region`,
`file_signatures`, `input_checks`), clip prediction (`clip_prediction`, `aggregation`), the lesion step (`lesion`),
Grad-CAM (`saliency`), the out-of-distribution score (`ood`) and the inference rewrites (`inference_prep`,
`batchnorm_folding`, `static_padding`).

Nothing here ships in an exported model folder: these modules may use PyAV, pydicom, Grad-CAM and matplotlib, which
the Hub files (`usvcl_hf/*.py`) never import.
"""
