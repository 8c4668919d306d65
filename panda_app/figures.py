"""Figures and downloads shared by the pages: indicator heatmaps (one, or a
grid of every indicator), family colours, CSV exports of matrices and the
download buttons of a figure. Plotting only: the numbers come from panda_core.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

FAMILY_COLORS = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6"]
PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def plot(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, key=key, config=PLOT_CONFIG)


def family_colors(families: list[str]) -> dict[str, str]:
    """One stable colour per task family, in order of first appearance."""
    return {f: FAMILY_COLORS[i % len(FAMILY_COLORS)] for i, f in enumerate(dict.fromkeys(families))}


def _family_blocks(fig: go.Figure, fams: list[str]) -> None:
    """White lines between the family blocks of a heatmap, and each family's name above its block."""
    n = len(fams)
    bounds = [i for i in range(1, n) if fams[i] != fams[i - 1]]
    line = dict(type="line", line=dict(color="white", width=3), xref="x", yref="y")
    for b in bounds:
        fig.add_shape(**line, x0=b - 0.5, x1=b - 0.5, y0=-0.5, y1=n - 0.5)
        fig.add_shape(**line, y0=b - 0.5, y1=b - 0.5, x0=-0.5, x1=n - 0.5)
    for s, e in zip([0] + bounds, bounds + [n], strict=True):
        fig.add_annotation(x=(s + e - 1) / 2, y=1.0, yref="paper", yanchor="bottom", text=f"<b>{fams[s]}</b>",
                           showarrow=False, font=dict(size=11))


def heatmap(table: dict, z: list[list[float]] | None = None, title: str | None = None,
            diverging: bool = False) -> go.Figure:
    """Plotly heatmap of an indicator table: rows = source, columns = target,
    tasks grouped by family (blocks separated by lines), exact values on hover."""
    tasks, fams = table["tasks"], table["families"]
    z = table["matrix"] if z is None else z
    custom = [[[fams[i], fams[j]] for j in range(len(tasks))] for i in range(len(tasks))]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(tasks), y=list(tasks), customdata=custom,
        colorscale="RdBu" if diverging else "Viridis", zmid=0 if diverging else None,
        texttemplate="%{z:.2f}" if len(tasks) <= 12 else None,
        hovertemplate="source %{y} (%{customdata[0]})<br>target %{x} (%{customdata[1]})"
                      "<br>value %{z}<extra></extra>",
        colorbar=dict(title=""),
    ))
    _family_blocks(fig, fams)
    fig.update_layout(title=title or table.get("metric"), height=max(380, 40 * len(tasks) + 160),
                      margin=dict(l=10, r=10, t=80, b=10), xaxis=dict(title="target", side="bottom"),
                      yaxis=dict(title="source", autorange="reversed"))
    return fig


def heatmap_grid(tables: list[dict], cols: int = 4) -> go.Figure:
    """Small multiples: one heatmap per indicator table (each on its own colour
    scale, since indicators live on different scales)."""
    from plotly.subplots import make_subplots

    rows = (len(tables) + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t["metric"] for t in tables],
                        horizontal_spacing=0.06, vertical_spacing=0.12)
    for k, table in enumerate(tables):
        r, c = k // cols + 1, k % cols + 1
        fig.add_trace(go.Heatmap(z=table["matrix"], x=table["tasks"], y=table["tasks"], showscale=False,
                                 colorscale="Viridis", name=table["metric"],
                                 hovertemplate=f"{table['metric']}<br>source %{{y}}<br>target %{{x}}"
                                               "<br>value %{z}<extra></extra>"), row=r, col=c)
        fig.update_yaxes(autorange="reversed", row=r, col=c, showticklabels=c == 1)
        fig.update_xaxes(showticklabels=False, row=r, col=c)
    fig.update_layout(height=330 * rows + 60, margin=dict(l=10, r=10, t=60, b=10),
                      title="Every indicator (rows = source, columns = target; each panel on its own scale)")
    return fig


def tables_csv(tables: list[dict]) -> str:
    """Long format: metric, source, target, value."""
    import pandas as pd

    rows = [{"metric": t["metric"], "source": s, "target": u, "value": t["matrix"][i][j]}
            for t in tables for i, s in enumerate(t["tasks"]) for j, u in enumerate(t["tasks"])]
    return pd.DataFrame(rows).to_csv(index=False)


def matrix_csv(table: dict, z: list[list[float]] | None = None) -> str:
    import pandas as pd

    z = table["matrix"] if z is None else z
    df = pd.DataFrame(z, index=table["tasks"], columns=table["tasks"])
    df.index.name = "source \\ target"
    return df.to_csv()


@st.cache_resource(show_spinner=False)
def _kaleido_present() -> bool:
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return True


def png_bytes(fig: go.Figure) -> bytes | None:
    """PNG via kaleido when it is installed and works offline; else None."""
    if not _kaleido_present():
        return None
    try:
        return fig.to_image(format="png", scale=2)
    except Exception:  # noqa: BLE001
        return None


def figure_downloads(fig: go.Figure, stem: str, csv: str | None = None, key: str = "",
                     csv_label: str = "Matrix (CSV)") -> None:
    """Download buttons: the matrix as CSV, the figure as standalone HTML
    (plotly.js embedded: opens offline), and PNG where kaleido is available."""
    cols = st.columns(3)
    if csv is not None:
        cols[0].download_button(csv_label, csv, file_name=f"{stem}.csv", mime="text/csv",
                                key=f"dl_csv_{key}", icon="⬇️")
    cols[1].download_button("Figure (HTML)", lambda: fig.to_html(include_plotlyjs=True, full_html=True),
                            file_name=f"{stem}.html", mime="text/html", key=f"dl_html_{key}", icon="⬇️")
    png = png_bytes(fig)
    if png is not None:
        cols[2].download_button("Figure (PNG)", png, file_name=f"{stem}.png", mime="image/png",
                                key=f"dl_png_{key}", icon="⬇️")
    else:
        cols[2].caption("PNG: use the camera icon in the chart's toolbar (drawn by your browser, works offline).")
