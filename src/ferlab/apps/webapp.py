"""The Streamlit web app: a photo, a camera snapshot or live video in, each face's expression out.

Start it with `ferlab app` or `streamlit run src/ferlab/apps/webapp.py`. The model comes
from $FERLAB_MODEL (default: the shipped default) and the sidebar offers every installed
model; each is loaded once per process. All the work is the `Predictor`'s: this script
only turns uploads into bytes and results into images, charts and text.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from ferlab.data.imageio import as_rgb
from ferlab.data.names import dataset_name
from ferlab.errors import FerlabError
from ferlab.inference.catalog import installed_models, model_name, model_summary
from ferlab.inference.choices import options_from_env
from ferlab.inference.predictor import FacePrediction, Predictor, load
from ferlab.models.prior import DEFAULT_PRIOR, prior_strength

if TYPE_CHECKING:  # Grad-CAM needs torch: imported when first asked for, so describing a model never does
    from ferlab.evaluation.explain import Explainer

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp"]
# A JSON list of WebRTC ICE servers for live video from other machines; unset = none (localhost only,
# offline). A comment, not a docstring: Streamlit would print a bare string in this script.
ICE_SERVERS_ENV = "FERLAB_ICE_SERVERS"
SOURCES = ("Upload a photo", "Camera snapshot", "Live webcam")
PRIORS = ("train", f"{DEFAULT_PRIOR:g}", "uniform")
OPTIONS = options_from_env(os.environ)
"""`ferlab app --detector/--tta/--prior/--device/...`: every model is served with them."""


@st.cache_resource(show_spinner="Loading the model…")
def get_predictor(reference: str, prior: str | None = None) -> Predictor:
    """One predictor per model, prior and process, shared by every session (None: the default prior)."""
    return load(reference, **{**OPTIONS, "prior": prior})


@st.cache_resource(show_spinner="Preparing Grad-CAM…")
def get_explainer(reference: str) -> Explainer:
    """Built on first use of Grad-CAM only: it copies the network."""
    from ferlab.evaluation.explain import Explainer

    return Explainer(get_predictor(reference))


def show_model_summary(summary: dict[str, Any]) -> None:
    """The facts a user needs before trusting a prediction, in the sidebar."""
    st.sidebar.subheader(f"Model card: {summary['name']}")
    lines = [f"**Classes** ({len(summary['classes'])}): {', '.join(summary['classes'])}"]
    if "members" in summary:  # an ensemble: each member's own facts
        lines.append("**Ensemble:** the mean of its members' calibrated probabilities")
        for member in summary["members"]:
            lines.append(f"**{member['name']}:** " + _model_facts(member, with_test=True))
        st.sidebar.markdown("  \n".join(lines))
        return
    lines += [
        f"**Architecture:** {_model_facts(summary)}",
        f"**Training data:** {summary['training_data'] or 'not recorded'}",
    ]
    test = summary["test"] or {}
    if "accuracy" in test:
        lines.append(
            f"**Test accuracy:** {test['accuracy']:.1%}"
            + (f" (macro F1 {test['macro_f1']:.3f})" if "macro_f1" in test else "")
        )
    else:
        lines.append("**Test accuracy:** not recorded")
    lines.append(f"**Calibration temperature:** {summary['temperature']:.2f}")
    st.sidebar.markdown("  \n".join(lines))
    if summary["card"]:
        st.sidebar.caption("The full model card is at the bottom of the page.")


def _model_facts(summary: dict[str, Any], with_test: bool = False) -> str:
    """A model's architecture and input (and test accuracy: an ensemble lists its members' so)."""
    size, channels = summary["input"]["size"], summary["input"]["channels"]
    test = summary["test"] or {}
    accuracy = f", test accuracy {test['accuracy']:.1%}" if with_test and "accuracy" in test else ""
    return f"{summary['architecture']}, {size}px, {'gray' if channels == 1 else 'colour'} input{accuracy}"


def card_for_people(card: str) -> str:
    """The model card as a user reads it: what the model is and how well it does, with datasets
    and weights named rather than located on the disk of whoever trained them. The commands that
    reproduce it, its training config and the sections added after training (int8, robustness,
    each led by the command that measured it) are for developers, in the card file itself."""
    head = card.split("\n## Training config", 1)[0]
    kept = [line for line in head.splitlines() if not line.startswith(("- Reproduce:", "# Model card"))]
    text = re.sub(r"`([^`\s]*/[^`\s]*)`", lambda path: dataset_name(path[1]) or "", "\n".join(kept)).strip()
    return f"{text}\n\nHow each figure was measured, and how to reproduce the model, is in its card file."


def probability_chart(face: FacePrediction) -> None:
    """Horizontal bars on one 0-1 axis for every face, so that faces can be compared."""
    spec = {
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": {
                "field": "probability",
                "type": "quantitative",
                "scale": {"domain": [0, 1]},
                "axis": {"format": ".0%", "values": [0, 0.25, 0.5, 0.75, 1]},
            },
            "y": {"field": "expression", "type": "nominal", "sort": None, "title": None},
        },
        "height": {"step": 22},  # a row per class, every class named
        "usermeta": {"embedOptions": {"renderer": "svg"}},  # axes in the page, readable by assistive tools
    }
    frame = pd.DataFrame({"expression": list(face.probabilities), "probability": list(face.probabilities.values())})
    st.vega_lite_chart(frame, spec, width="stretch")


def show_analysis(predictor: Predictor, data: bytes, name: str, detect: bool, explainer: Explainer | None) -> None:
    """Decode, predict and show: the boxed image, then per face its label, confidence and all probabilities."""
    try:
        rgb = as_rgb(data)
    except FerlabError as exc:
        st.error(f"**{name}** could not be read as an image. Upload a JPEG, PNG or WebP photo. ({exc})")
        return
    faces = predictor.predict(rgb, detect=detect)
    if not faces:
        st.warning(
            f"No face found in **{name}**. Try a photo with a clear, frontal face, or switch off "
            "'Find faces' if the image is already a face crop."
        )
        st.image(rgb, caption=name)
        return
    st.image(faces.draw(rgb, top=1), caption=f"{name}: {len(faces)} face{'s' if len(faces) > 1 else ''}")
    for number, face in enumerate(faces, start=1):
        with st.container(border=True):
            st.markdown(f"**Face {number}: {face.label}** ({face.confidence:.0%} confidence, calibrated)")
            if face.uncertain:
                st.info(
                    f"Uncertain: the top expression has only {face.confidence:.0%} probability, "
                    "so the model is not sure. Read the other bars too."
                )
            picture, chart = st.columns([1, 3])
            x, y, w, h = face.box
            picture.image(
                explainer.overlay(rgb, face) if explainer else rgb[y : y + h, x : x + w],
                caption="Grad-CAM: where the model looked" if explainer else f"face {number}",
                width="stretch",
            )
            with chart:
                probability_chart(face)


def live_webcam(predictor: Predictor, reference: str) -> None:
    """Live video through WebRTC when streamlit-webrtc is installed: boxes and smoothed labels on each frame."""
    try:
        import av
        from streamlit_webrtc import webrtc_streamer
    except ImportError:
        st.info(
            "Live video needs the optional package streamlit-webrtc (`pip install 'ferlab[live]'`). "
            "A camera snapshot works without it."
        )
        return
    from ferlab.inference.tracking import FaceTracker
    from ferlab.inference.video import draw_tracks

    try:
        ice_servers = json.loads(os.environ.get(ICE_SERVERS_ENV) or "[]")
    except json.JSONDecodeError as exc:
        st.error(f"${ICE_SERVERS_ENV} must be a JSON list of ICE servers ({exc})")
        return
    tracker = st.session_state.setdefault(f"tracker:{reference}", FaceTracker(predictor.classes))

    def analyse_frame(frame: av.VideoFrame) -> av.VideoFrame:
        rgb = frame.to_ndarray(format="rgb24")
        draw_tracks(rgb, tracker, tracker.update(list(predictor.predict(rgb))), predictor.uncertain_below)
        return av.VideoFrame.from_ndarray(rgb, format="rgb24")

    webrtc_streamer(
        key=f"live:{reference}",
        video_frame_callback=analyse_frame,
        rtc_configuration={"iceServers": ice_servers},
        media_stream_constraints={"video": True, "audio": False},
    )
    st.caption(
        "Works on localhost without internet. From another machine the page must be served over HTTPS "
        f"and ${ICE_SERVERS_ENV} must name a reachable STUN/TURN server."
    )


def main() -> None:
    st.set_page_config(page_title="ferlab: facial expressions", layout="wide")
    st.title("Facial expression recognition")
    reference = st.sidebar.selectbox(
        "Model",
        installed_models(),
        format_func=lambda ref: ref if model_name(ref) == ref else f"{model_name(ref)} ({ref})",
    )
    start = str(OPTIONS.get("prior", f"{DEFAULT_PRIOR:g}"))
    prior = st.sidebar.select_slider(
        "Rebalance rare expressions",
        sorted({*PRIORS, start}, key=prior_strength),
        value=start,
        format_func=lambda choice: f"{prior_strength(choice):g}",
        help="The model learnt from photos where most faces are neutral or happy, so it calls a face "
        "disgusted, afraid or contemptuous only on strong evidence. Rebalancing lets those rare "
        "expressions through more often: right for posed photo sets where every expression is equally "
        "common, too often wrong on everyday photos. `ferlab app --prior` sets where it starts.",
    )
    st.sidebar.caption(
        "0 keeps the training mix (best on everyday photos), 1 treats all expressions as equally likely "
        "(posed photo sets), 0.5 is half way."
    )
    try:  # the default, not asked for, falls back to no correction for a model that cannot give it
        predictor = get_predictor(reference, None if prior == start and "prior" not in OPTIONS else prior)
    except FerlabError as exc:
        st.error(f"Cannot load the model: {exc}")
        st.stop()
    if predictor.prior_strength == 0 and prior_strength(prior) > 0:
        st.sidebar.caption("This model does not record its training class prior, so it is not rebalanced.")
    detect = st.sidebar.toggle("Find faces", value=True, help="Off: the whole image is one face crop.")
    explain = st.sidebar.toggle(
        "Grad-CAM overlay", value=False, key="gradcam", help="Show where in each face the model looked for its answer."
    )
    summary = model_summary(predictor.record, reference, [m.record for m in predictor.members])
    show_model_summary(summary)
    explainer = None
    if explain:
        try:
            explainer = get_explainer(reference)
        except FerlabError as exc:  # an ensemble has no single network to explain
            st.sidebar.warning(str(exc))

    source = st.radio("Source", SOURCES, horizontal=True)
    if source == SOURCES[2]:
        live_webcam(predictor, reference)
    else:
        upload = (
            st.file_uploader("A photo with one or more faces", type=UPLOAD_TYPES)
            if source == SOURCES[0]
            else st.camera_input("Take a snapshot")
        )
        if upload is not None:
            show_analysis(predictor, upload.getvalue(), upload.name, detect, explainer)
    if summary["card"]:
        with st.expander(f"Full model card: {summary['name']}"):
            st.markdown(card_for_people(summary["card"]))


if __name__ == "__main__":  # Streamlit runs this file as __main__; importing it shows nothing
    main()
