"""Training for usvcl, by stage (imports usvcl_hf, never the reverse): `prepare_data`, `pretrain`, `finetune`, `lesion`,
`export`, `publish`; the pieces the stages share sit at the top (`atomic`, `augment`, `common`, `config`,
`evaluation`, `folds`, `imagenet_init`, `logs`, `provenance`, `synthetic`)."""
