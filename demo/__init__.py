"""The Gradio demo's server plumbing beside `app.py`: where uploads and per-request copies live and how they are
swept (`storage`), and the page's summary table and text (`summary`). Model maths stays in `usvcl_hf`."""
