"""panda_core: soft-prompt transferability, the library behind the app.

Layers (one direction): backbones, tasks -> prompts -> train -> metrics,
projector -> store -> jobs -> cli. Never imports streamlit.
"""

__version__ = "0.1.0"
