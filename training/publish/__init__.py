"""Publishing an exported folder to the Hugging Face Hub, and the demo Space (`python -m training.publish`; usage in
`push_to_hub`)."""
