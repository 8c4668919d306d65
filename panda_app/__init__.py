"""The Streamlit views' shared code (pages stay thin): `ui` (page set-up, cached
reads of panda_core, selectors built from the registries), `jobs_view`
(background jobs: progress, curves, live panels) and `figures` (heatmaps,
figure downloads)."""
