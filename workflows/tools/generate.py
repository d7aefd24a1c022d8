#!/usr/bin/env python3
"""ComfyUMe's workshop templates, written as a spec and generated.

From the six workflow specs below this script writes, for each one:

- ``workflows/ui/<name>.json``: the workflow as the ComfyUI frontend (1.58)
  loads it: litegraph format 0.4, flat (no subgraphs), nodes laid out left to
  right in titled groups;
- ``workflows/api/<name>.api.json``: the API-format prompt the frontend's
  ``graphToPrompt`` makes of that workflow (what it POSTs to ``/api/prompt``).

Widget order, widget/socket split and defaults come from the node catalogue
(ComfyUI 0.33.0 ``/object_info``). The full catalogue lives outside the
repository (``../shared/reference/comfyui-protocol-samples/``); the classes
used here are kept in ``workflows/tools/node_defs.json`` (tooltips stripped)
so that ``--check`` works on a fresh clone. When the full catalogue is there,
it is read instead and the subset is regenerated from it.

Usage::

    python3 workflows/tools/generate.py            # write the files
    python3 workflows/tools/generate.py --check    # fail if they differ

Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import json
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
NODE_DEFS = WORKFLOWS / "tools" / "node_defs.json"
FULL_CATALOGUE = (
    ROOT.parent
    / "shared/reference/comfyui-protocol-samples/object_info.comfyui-0.33.0.json.gz"
)
UUID_NAMESPACE = uuid.UUID("1f0c7a52-5b52-4d55-9e0b-6d2c0c6f3a10")


class SpecError(Exception):
    """A spec that the catalogue (or the frontend) would not accept."""


# --------------------------------------------------------------------- specs

# FLUX.2 [Klein] model files, per size and variant (as in the Comfy-Org
# FLUX.2 Klein text-to-image templates).
FLUX2_KLEIN = {
    "4b": {
        "unet": {
            "base": "flux-2-klein-base-4b.safetensors",
            "distilled": "flux-2-klein-4b.safetensors",
        },
        "clip": "qwen_3_4b.safetensors",
        "vae": "flux2-vae.safetensors",
        "prompt": (
            "A red fox curled up asleep on a mossy tree stump in a misty pine "
            "forest at dawn, soft golden side light, shallow depth of field, "
            "35 mm photograph"
        ),
    },
    "9b": {
        "unet": {
            "base": "flux-2-klein-base-9b-fp8.safetensors",
            "distilled": "flux-2-klein-9b-fp8.safetensors",
        },
        "clip": "qwen_3_8b_fp8mixed.safetensors",
        "vae": "flux2-vae.safetensors",
        "prompt": (
            "A lighthouse on a rocky headland during a winter storm at dusk, "
            "waves breaking over the rocks, warm light from the lantern room, "
            "wide cinematic shot, fine film grain"
        ),
    },
}
# Base models sample 20 steps at CFG 5 against an empty negative prompt;
# distilled ones 4 steps at CFG 1 against the zeroed positive prompt.
FLUX2_SAMPLING = {
    "base": {"steps": 20, "cfg": 5},
    "distilled": {"steps": 4, "cfg": 1},
}


def flux2_klein_t2i(size: str, variant: str) -> Graph:
    m, s = FLUX2_KLEIN[size], FLUX2_SAMPLING[variant]
    g = Graph(f"comfyume_flux2_klein_{size}_t2i_{variant}")

    g.column().group("Models")
    unet = g.add("UNETLoader", "Diffusion model", unet_name=m["unet"][variant],
                 weight_dtype="default")
    clip = g.add("CLIPLoader", "Text encoder", clip_name=m["clip"], type="flux2",
                 device="default")
    vae = g.add("VAELoader", "VAE", vae_name=m["vae"])

    g.column(wide=True).group("Prompt")
    prompt = g.add("PrimitiveStringMultiline", "Prompt", value=m["prompt"])
    positive = g.add("CLIPTextEncode", "Encode prompt", text=prompt, clip=clip)
    if variant == "base":
        negative = g.add("CLIPTextEncode", "Negative (empty)", text="", clip=clip)
    else:
        negative = g.add("ConditioningZeroOut", "No negative", conditioning=positive)

    g.column().group("Image size")
    width = g.add("PrimitiveInt", "Width", value=1024)
    height = g.add("PrimitiveInt", "Height", value=1024)
    latent = g.add("EmptyFlux2LatentImage", "Empty image", width=width,
                   height=height, batch_size=1)

    g.column().group("Sampling")
    noise = g.add("RandomNoise", "Seed", noise_seed=0)
    sampler = g.add("KSamplerSelect", "Sampler", sampler_name="euler")
    sigmas = g.add("Flux2Scheduler", "Steps", steps=s["steps"], width=width,
                   height=height)
    guider = g.add("CFGGuider", "Guidance", model=unet, positive=positive,
                   negative=negative, cfg=s["cfg"])
    sampled = g.add("SamplerCustomAdvanced", "Sample", noise=noise, guider=guider,
                    sampler=sampler, sigmas=sigmas, latent_image=latent)

    g.column().group("Output")
    image = g.add("VAEDecode", "Decode", samples=sampled[0], vae=vae)
    g.add("SaveImage", "Save", images=image, filename_prefix="Flux2-Klein")
    return g


# LTX-2 (19B) model files, per variant (as in the Comfy-Org LTX-2
# text-to-video templates). Both variants share the Gemma 3 text encoder and
# the x2 spatial upscaler; dev refines with the distilled LoRA.
LTX2 = {
    "dev": {
        "ckpt": "ltx-2-19b-dev-fp8.safetensors",
        "prompt": (
            "A street musician in a yellow raincoat plays an accordion under a "
            "stone bridge at night while rain falls around him. He smiles and "
            "sings in French: \"La pluie danse sur la ville.\" Puddles reflect "
            "the orange streetlights, and a passing cyclist rings a bell. The "
            "camera slowly pushes in on his face as the song swells."
        ),
        "negative": (
            "blurry, low quality, static frame, watermark, subtitles, "
            "text overlay, distorted faces"
        ),
    },
    "distilled": {
        "ckpt": "ltx-2-19b-distilled.safetensors",
        "prompt": (
            "An old woman kneads bread dough on a wooden table in a sunlit "
            "farmhouse kitchen, humming a slow folk tune. Flour drifts in the "
            "light from the window. A kettle on the stove begins to whistle; "
            "she laughs, wipes her hands on her apron and turns toward it. "
            "Handheld camera, warm tones, the crackle of a wood fire."
        ),
    },
}
LTX2_TEXT_ENCODER = "gemma_3_12B_it_fp4_mixed.safetensors"
LTX2_UPSCALER = "ltx-2-spatial-upscaler-x2-1.0.safetensors"
LTX2_DISTILLED_LORA = "ltx-2-19b-distilled-lora-384.safetensors"
# Sigmas of the distilled schedules: 8 steps for the first pass of the
# distilled model, 3 for every refine pass.
LTX2_SIGMAS_PASS1_DISTILLED = "1., 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0"
LTX2_SIGMAS_REFINE = "0.909375, 0.725, 0.421875, 0.0"


def ltx2_t2v(variant: str) -> Graph:
    m, dev = LTX2[variant], variant == "dev"
    g = Graph(f"comfyume_ltx2_t2v_{variant}")

    g.column().group("Models")
    ckpt = g.add("CheckpointLoaderSimple", "Checkpoint", ckpt_name=m["ckpt"])
    text_encoder = g.add("LTXAVTextEncoderLoader", "Text encoder",
                         text_encoder=LTX2_TEXT_ENCODER, ckpt_name=m["ckpt"],
                         device="default")
    audio_vae = g.add("LTXVAudioVAELoader", "Audio VAE", ckpt_name=m["ckpt"])
    upscaler = g.add("LatentUpscaleModelLoader", "Upscaler x2",
                     model_name=LTX2_UPSCALER)

    g.column(wide=True).group("Prompt")
    if dev:
        positive = g.add("CLIPTextEncode", "Prompt", text=m["prompt"],
                         clip=text_encoder)
        negative = g.add("CLIPTextEncode", "Negative", text=m["negative"],
                         clip=text_encoder)
    else:
        prompt = g.add("PrimitiveStringMultiline", "Prompt", value=m["prompt"])
        positive = negative = g.add("CLIPTextEncode", "Encode prompt", text=prompt,
                                    clip=text_encoder)

    g.column().group("Size and length")
    size = g.add("EmptyImage", "Video size", width=1280, height=720, batch_size=1,
                 color=0)
    half = g.add("ImageScaleBy", "Half size", image=size,
                 upscale_method="lanczos" if dev else "nearest-exact", scale_by=0.5)
    first_pass = g.add("GetImageSize", "First pass size", image=half)
    frames = g.add("PrimitiveInt", "Frames (8n+1)", value=121)
    g.group("Frame rate (keep both equal)")
    fps = g.add("PrimitiveFloat", "fps", value=24)
    fps_audio = g.add("PrimitiveInt", "fps (audio)", value=24)

    g.column().group("Conditioning and latents")
    cond = g.add("LTXVConditioning", "Conditioning", positive=positive,
                 negative=negative, frame_rate=fps)
    video_latent = g.add("EmptyLTXVLatentVideo", "Empty video", width=first_pass[0],
                         height=first_pass[1], length=frames, batch_size=1)
    audio_latent = g.add("LTXVEmptyLatentAudio", "Empty audio", frames_number=frames,
                         frame_rate=fps_audio, batch_size=1, audio_vae=audio_vae)
    av_latent = g.add("LTXVConcatAVLatent", "Video + audio",
                      video_latent=video_latent, audio_latent=audio_latent)

    g.column().group("Pass 1: half size")
    noise1 = g.add("RandomNoise", "Seed", noise_seed=10 if dev else 45)
    sampler1 = g.add("KSamplerSelect", "Sampler", sampler_name="euler_ancestral")
    if dev:
        sigmas1 = g.add("LTXVScheduler", "Steps", steps=20, max_shift=2.05,
                        base_shift=0.95, stretch=True, terminal=0.1, latent=av_latent)
    else:
        sigmas1 = g.add("ManualSigmas", "Sigmas (8 steps)",
                        sigmas=LTX2_SIGMAS_PASS1_DISTILLED)
    guider1 = g.add("CFGGuider", "Guidance", model=ckpt[0], positive=cond[0],
                    negative=cond[1], cfg=4 if dev else 1)
    pass1 = g.add("SamplerCustomAdvanced", "Sample", noise=noise1, guider=guider1,
                  sampler=sampler1, sigmas=sigmas1, latent_image=av_latent)

    g.column().group("Upscale x2")
    # dev splits the sampler's output, distilled its denoised output.
    split1 = g.add("LTXVSeparateAVLatent", "Split", av_latent=pass1[0 if dev else 1])
    if dev:
        crop = g.add("LTXVCropGuides", "Crop guides", positive=cond[0],
                     negative=cond[1], latent=split1[0])
        to_upscale, refine_cond = crop[2], crop
    else:
        to_upscale, refine_cond = split1[0], cond
    upscaled = g.add("LTXVLatentUpsampler", "Upscale video", samples=to_upscale,
                     upscale_model=upscaler, vae=ckpt[2])
    av_upscaled = g.add("LTXVConcatAVLatent", "Video + audio",
                        video_latent=upscaled, audio_latent=split1[1])

    g.column().group("Pass 2: refine")
    if dev:
        refine_model = g.add("LoraLoaderModelOnly", "Distilled LoRA", model=ckpt[0],
                             lora_name=LTX2_DISTILLED_LORA, strength_model=1)
    else:
        refine_model = ckpt
    noise2 = g.add("RandomNoise", "Seed", noise_seed=0 if dev else 420)
    sampler2 = g.add("KSamplerSelect", "Sampler", sampler_name="euler_ancestral")
    sigmas2 = g.add("ManualSigmas", "Sigmas (3 steps)", sigmas=LTX2_SIGMAS_REFINE)
    guider2 = g.add("CFGGuider", "Guidance", model=refine_model[0],
                    positive=refine_cond[0], negative=refine_cond[1], cfg=1)
    pass2 = g.add("SamplerCustomAdvanced", "Sample", noise=noise2, guider=guider2,
                  sampler=sampler2, sigmas=sigmas2, latent_image=av_upscaled)

    g.column().group("Decode and save")
    split2 = g.add("LTXVSeparateAVLatent", "Split", av_latent=pass2[1])
    frames_out = g.add("VAEDecodeTiled", "Decode video", samples=split2[0], vae=ckpt[2],
                       tile_size=512, overlap=64, temporal_size=4096,
                       temporal_overlap=8)
    sound = g.add("LTXVAudioVAEDecode", "Decode audio", samples=split2[1],
                  audio_vae=audio_vae)
    video = g.add("CreateVideo", "Make video", images=frames_out, fps=fps, audio=sound,
                  bit_depth=8)
    g.add("SaveVideo", "Save", video=video, filename_prefix="video/LTX-2",
          format="mp4" if dev else "auto", **{"format.codec": "auto"}, codec="auto")
    return g


def specs() -> list[Graph]:
    return [
        flux2_klein_t2i("4b", "base"),
        flux2_klein_t2i("4b", "distilled"),
        flux2_klein_t2i("9b", "base"),
        flux2_klein_t2i("9b", "distilled"),
        ltx2_t2v("dev"),
        ltx2_t2v("distilled"),
    ]


# ------------------------------------------------------------- graph builder


class Out:
    """One output slot of a node, used as an input value."""

    def __init__(self, node: Node, slot: int):
        self.node, self.slot = node, slot


class Node:
    def __init__(self, nid: int, cls: str, title: str, values: dict, group: Group):
        self.id, self.cls, self.title, self.values, self.group = nid, cls, title, values, group

    def __getitem__(self, slot: int) -> Out:
        return Out(self, slot)


class Group:
    def __init__(self, title: str, column: Column):
        self.title, self.column, self.nodes = title, column, []


class Column:
    def __init__(self, wide: bool):
        self.wide, self.groups = wide, []


class Graph:
    """A flat workflow: nodes in groups, groups in columns (left to right)."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[Node] = []
        self.columns: list[Column] = []

    def column(self, wide: bool = False) -> Graph:
        self.columns.append(Column(wide))
        return self

    def group(self, title: str) -> Graph:
        column = self.columns[-1]
        column.groups.append(Group(title, column))
        return self

    def add(self, cls: str, title: str, **values) -> Node:
        group = self.columns[-1].groups[-1]
        node = Node(len(self.nodes) + 1, cls, title, values, group)
        self.nodes.append(node)
        group.nodes.append(node)
        return node


# ------------------------------------------------------------ node catalogue

# Input types the frontend draws as widgets; every other type is a socket.
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
# The fields of a class definition kept in node_defs.json.
DEF_KEYS = ("display_name", "input", "input_order", "output", "output_name")


def strip_tooltips(value):
    if isinstance(value, dict):
        return {k: strip_tooltips(v) for k, v in value.items() if k != "tooltip"}
    if isinstance(value, list):
        return [strip_tooltips(v) for v in value]
    return value


def load_catalogue(path: Path | None) -> tuple[dict, bool]:
    """The node definitions, and whether they came from the full catalogue."""
    full = path or FULL_CATALOGUE
    if full.exists():
        opener = gzip.open if full.suffix == ".gz" else open
        with opener(full, "rt", encoding="utf-8") as f:
            return json.load(f), True
    if path is not None:
        raise SpecError(f"node catalogue {path} not found")
    if not NODE_DEFS.exists():
        raise SpecError(f"neither {FULL_CATALOGUE} nor {NODE_DEFS} exists")
    return json.loads(NODE_DEFS.read_text(encoding="utf-8")), False


def subset(catalogue: dict, classes: set[str]) -> dict:
    return {
        cls: strip_tooltips({k: catalogue[cls][k] for k in DEF_KEYS if k in catalogue[cls]})
        for cls in sorted(classes)
    }


class InputDef:
    """One input of a node class: a widget or a socket."""

    def __init__(self, name: str, spec: list, optional: bool, cls: str):
        self.name, self.optional = name, optional
        kind = spec[0]
        self.opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        if isinstance(kind, list):  # legacy combo: the option list itself
            self.type, self.options = "COMBO", kind
        else:
            self.type = kind
            self.options = self.opts.get("options")
        widget_type = self.opts.get("widgetType", self.type)
        if any(k.endswith("_upload") for k in self.opts):
            # The frontend adds an upload widget of its own (another value).
            raise SpecError(f"{cls}.{name}: upload widgets are not supported here")
        if self.opts.get("forceInput"):
            self.widget = None
        elif widget_type in WIDGET_TYPES or widget_type == DYNAMIC_COMBO:
            self.widget = widget_type
        elif widget_type.startswith("COMFY_"):
            raise SpecError(f"{cls}.{name}: input type {widget_type} is not supported here")
        else:
            self.widget = None
        if self.widget == DYNAMIC_COMBO:
            self.dynamic = {o["key"]: o.get("inputs", {}) for o in self.options}
            self.options = list(self.dynamic)

    def default(self):
        if "default" in self.opts:
            return self.opts["default"]
        if self.widget in ("COMBO", DYNAMIC_COMBO) and self.options:
            return self.options[0]
        return None

    @property
    def control(self) -> bool:
        """Whether the frontend adds a `control_after_generate` widget."""
        if self.widget != "INT":
            if self.opts.get("control_after_generate"):
                raise SpecError(f"{self.name}: control_after_generate on a {self.widget}")
            return False
        flag = self.opts.get("control_after_generate")
        return bool(flag) if flag is not None else self.name in ("seed", "noise_seed")


def input_defs(inputs: dict, order: dict | None, cls: str, prefix: str = "") -> list[InputDef]:
    """Inputs in the order the frontend creates them: required, then optional."""
    out = []
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        names = (order or {}).get(section, list(specs))
        if set(names) != set(specs):
            raise SpecError(f"{cls}: input_order does not match the {section} inputs")
        for name in names:
            out.append(InputDef(prefix + name, specs[name], section == "optional", cls))
    return out


class ClassDef:
    def __init__(self, cls: str, catalogue: dict):
        if cls not in catalogue:
            raise SpecError(f"node class {cls} is not in the node catalogue")
        d = catalogue[cls]
        self.cls = cls
        self.display_name = d.get("display_name") or cls
        self.inputs = input_defs(d["input"], d.get("input_order"), cls)
        names = d.get("output_name") or d["output"]
        self.outputs = list(zip(names, d["output"]))

    def widgets(self, values: dict | None = None,
                saved: list | None = None) -> list[tuple[str, InputDef | None]]:
        """The node's widgets in order, as (name, input); `None` for a
        `control_after_generate` widget. Dynamic combos insert the inputs of
        their chosen option right after themselves; the choice is taken from
        `values` (by name) or `saved` (a node's widgets_values, by position),
        else the default."""
        out = []

        def add(inp: InputDef):
            out.append((inp.name, inp))
            index = len(out) - 1
            if inp.control:
                out.append(("control_after_generate", None))
            if inp.widget == DYNAMIC_COMBO:
                if saved is not None and index < len(saved):
                    choice = saved[index]
                else:
                    choice = (values or {}).get(inp.name, inp.default())
                if choice not in inp.dynamic:
                    raise SpecError(f"{self.cls}.{inp.name}: {choice!r} is not an option")
                for child in input_defs(inp.dynamic[choice], None, self.cls, inp.name + "."):
                    if child.widget:
                        add(child)
                    else:
                        raise SpecError(f"{self.cls}.{child.name}: dynamic sockets unsupported")

        for inp in self.inputs:
            if inp.widget:
                add(inp)
        return out

    def sockets(self) -> list[InputDef]:
        return [i for i in self.inputs if not i.widget]


# ------------------------------------------------------------- UI workflow

SLOT_H, WIDGET_H, TITLE_H = 20, 24, 30
NODE_W, WIDE_W, TEXT_H, MULTILINE_MIN_H = 320, 420, 150, 30
GROUP_TITLE_H, PAD, GAP, COLUMN_GAP = 40, 20, 30, 60
GROUP_COLOR = "#3f789e"
# Every seed stays as written, so a queued template is its API file.
CONTROL_AFTER_GENERATE = "fixed"
# Inputs that name model files (their lists depend on the installed models).
MODEL_FILE_INPUTS = {"unet_name", "clip_name", "vae_name", "ckpt_name", "text_encoder",
                     "lora_name", "model_name"}


def accepts(input_type: str, output_type: str) -> bool:
    accepted = input_type.split(",")
    return "*" in accepted or output_type in accepted


def check_value(cls: str, inp: InputDef, value, sent: bool):
    """Fails unless the frontend would take `value` for this widget as is;
    `sent` when it goes into the prompt (the widget is not linked)."""
    where = f"{cls}.{inp.name}"
    kind = inp.widget
    if kind in ("COMBO", DYNAMIC_COMBO):
        if not isinstance(value, str):
            raise SpecError(f"{where}: {value!r} is not a string")
        if inp.name in MODEL_FILE_INPUTS:
            # The catalogue was taken on a server without models: its lists
            # of model files are empty (or hold only built-ins).
            if not value.endswith(".safetensors"):
                raise SpecError(f"{where}: {value!r} is not a .safetensors file")
        elif value not in (inp.options or []):
            raise SpecError(f"{where}: {value!r} is not one of {inp.options}")
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            raise SpecError(f"{where}: {value!r} is not a boolean")
    elif kind == "STRING":
        if not isinstance(value, str):
            raise SpecError(f"{where}: {value!r} is not a string")
        if sent and inp.opts.get("dynamicPrompts") and any(c in value for c in "{}|\\/"):
            # The frontend would rewrite the text (dynamic prompts, comments).
            raise SpecError(f"{where}: avoid {{ }} | \\ / in a dynamic-prompt text")
    elif kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where}: {value!r} is not a number")
        if kind == "INT" and not float(value).is_integer():
            raise SpecError(f"{where}: {value!r} is not a whole number")
        lo, hi = inp.opts.get("min"), inp.opts.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise SpecError(f"{where}: {value!r} is outside {lo}..{hi}")


def node_height(cdef: ClassDef, widgets, linked: set[str]) -> int:
    """At least the height the frontend computes (rows of sockets, one row
    per visible widget, more for a text box); an unlinked text box gets room
    to read."""
    rows = max(len(cdef.sockets()), len(cdef.outputs), 1)
    height = rows * SLOT_H + 14
    for name, inp in widgets:
        if inp is not None and inp.opts.get("hidden"):
            continue
        height += WIDGET_H
        if inp is not None and inp.widget == "STRING" and inp.opts.get("multiline"):
            height += MULTILINE_MIN_H if name in linked else TEXT_H
    return height


def build_ui(g: Graph, catalogue: dict) -> dict:
    cdefs = {n.id: ClassDef(n.cls, catalogue) for n in g.nodes}
    links = []  # [id, from_node, from_slot, to_node, to_slot, type]
    out_links: dict[tuple[int, int], list[int]] = {}
    nodes = []
    for node in g.nodes:
        cdef = cdefs[node.id]
        widgets = cdef.widgets(node.values)
        widget_defs = {name: inp for name, inp in widgets if inp}
        known = set(widget_defs) | {i.name for i in cdef.sockets()}
        for name in node.values:
            if name not in known:
                raise SpecError(f"{g.name}: {node.cls} has no input {name!r}")
        linked: dict[str, Out] = {}
        for name, value in node.values.items():
            if isinstance(value, Node):
                value = value[0]
            if isinstance(value, Out):
                linked[name] = value

        # Inputs as the frontend saves them: the sockets, then the linked
        # widgets (unlinked widget inputs are left out).
        inputs = []
        for inp in cdef.sockets() + list(widget_defs.values()):
            source = linked.get(inp.name)
            if inp.widget and source is None:
                continue
            entry = {"name": inp.name, "type": inp.type}
            if inp.optional:
                entry["shape"] = 7
            if inp.widget:
                entry["widget"] = {"name": inp.name}
            link_id = None
            if source is not None:
                src_def = cdefs[source.node.id]
                if source.slot >= len(src_def.outputs):
                    raise SpecError(f"{g.name}: {source.node.cls} has no output {source.slot}")
                out_type = src_def.outputs[source.slot][1]
                if not accepts(inp.type, out_type):
                    raise SpecError(
                        f"{g.name}: {node.cls}.{inp.name} ({inp.type}) "
                        f"cannot take {source.node.cls} output {out_type}"
                    )
                link_id = len(links) + 1
                links.append([link_id, source.node.id, source.slot, node.id,
                              len(inputs), out_type])
                out_links.setdefault((source.node.id, source.slot), []).append(link_id)
            elif not inp.optional:
                raise SpecError(f"{g.name}: {node.cls}.{inp.name} is not connected")
            entry["link"] = link_id
            inputs.append(entry)

        values = []
        for name, inp in widgets:
            if inp is None:
                values.append(CONTROL_AFTER_GENERATE)
                continue
            if name in linked:
                src = linked[name].node
                value = src.values.get("value") if src.cls.startswith("Primitive") else None
                value = inp.default() if value is None else value
            elif name in node.values:
                value = node.values[name]
            else:
                value = inp.default()
                if value is None:
                    raise SpecError(f"{g.name}: {node.cls}.{name} needs a value")
            check_value(node.cls, inp, value, sent=name not in linked)
            values.append(value)

        nodes.append({
            "id": node.id,
            "type": node.cls,
            "pos": [0, 0],
            "size": [WIDE_W if node.group.column.wide else NODE_W,
                     node_height(cdef, widgets, set(linked))],
            "flags": {},
            "order": 0,
            "mode": 0,
            "inputs": inputs,
            "outputs": [
                {"name": name, "type": kind, "links": [], "slot_index": slot}
                for slot, (name, kind) in enumerate(cdef.outputs)
            ],
            "title": node.title,
            "properties": {"Node name for S&R": node.cls},
        })
        if values:  # the frontend leaves it out for a node without widgets
            nodes[-1]["widgets_values"] = values
    for ui in nodes:
        for out in ui["outputs"]:
            out["links"] = out_links.get((ui["id"], out["slot_index"]), [])
    for ui, order in zip(nodes, execution_order(nodes, links)):
        ui["order"] = order
    groups = layout(g, {ui["id"]: ui for ui in nodes})
    width = max(x + w for x, _, w, _ in (gr["bounding"] for gr in groups))
    height = max(y + h for _, y, _, h in (gr["bounding"] for gr in groups))
    # Fit the width of a 1920 px screen, but not below 0.6, where the
    # frontend stops drawing text.
    scale = round(max(0.6, min(1.0, 1800 / width, 1000 / height)), 2)
    return {
        "id": str(uuid.uuid5(UUID_NAMESPACE, g.name)),
        "revision": 0,
        "last_node_id": len(nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {"ds": {"scale": scale, "offset": [round(100 / scale), round(100 / scale)]}},
        "version": 0.4,
    }


def execution_order(nodes: list[dict], links: list[list]) -> list[int]:
    """Litegraph's `computeExecutionOrder`: each node's position, sources first."""
    by_link = {link[0]: link for link in links}
    remaining = {n["id"]: sum(1 for i in n["inputs"] if i["link"] is not None) for n in nodes}
    by_id = {n["id"]: n for n in nodes}
    queue = [n["id"] for n in nodes if remaining[n["id"]] == 0]
    order: dict[int, int] = {}
    while queue:
        nid = queue.pop(0)
        order[nid] = len(order)
        for out in by_id[nid]["outputs"]:
            for link_id in out["links"]:
                target = by_link[link_id][3]
                remaining[target] -= 1
                if remaining[target] == 0:
                    queue.append(target)
    if len(order) != len(nodes):
        raise SpecError("the graph has a cycle")
    return [order[n["id"]] for n in nodes]


def layout(g: Graph, ui: dict[int, dict]) -> list[dict]:
    """Places nodes top to bottom in their group, groups top to bottom in their
    column, columns left to right; returns the groups."""
    groups, x = [], 0
    for column in g.columns:
        width = (WIDE_W if column.wide else NODE_W) + 2 * PAD
        y = 0
        for group in column.groups:
            top, cursor = y, y + GROUP_TITLE_H + PAD
            for node in group.nodes:
                n = ui[node.id]
                n["pos"] = [x + PAD, cursor + TITLE_H]
                cursor += TITLE_H + n["size"][1] + GAP
            bottom = cursor - GAP + PAD
            groups.append({
                "id": len(groups) + 1,
                "title": group.title,
                "bounding": [x, top, width, bottom - top],
                "color": GROUP_COLOR,
                "font_size": 24,
                "flags": {},
            })
            y = bottom + COLUMN_GAP
        x += width + COLUMN_GAP
    return groups


# ------------------------------------------------------------ API prompt


def graph_to_prompt(workflow: dict, catalogue: dict) -> dict:
    """What the frontend's `graphToPrompt` makes of a flat UI workflow: per
    node, every serialised widget in widget order (a linked one as its link),
    then every linked socket in input order; `control_after_generate` widgets
    are not sent. Object keys that are integers come out in ascending order,
    as JavaScript orders them."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in sorted(workflow["nodes"], key=lambda n: n["id"]):
        if node["mode"] in (2, 4):  # muted or bypassed
            continue
        cdef = ClassDef(node["type"], catalogue)
        saved = node.get("widgets_values", [])
        widgets = cdef.widgets(saved=saved)
        if len(widgets) != len(saved):
            raise SpecError(f"node {node['id']}: {len(saved)} widget "
                            f"values for {len(widgets)} widgets")
        linked = {}
        for inp in node["inputs"]:
            if inp["link"] is not None:
                link = links[inp["link"]]
                linked[inp["name"]] = [str(link[1]), link[2]]
        inputs = {}
        for (name, inp), value in zip(widgets, saved):
            if inp is not None:
                inputs[name] = linked.get(name, value)
        for inp in node["inputs"]:
            if inp["name"] in linked and inp["name"] not in inputs:
                inputs[inp["name"]] = linked[inp["name"]]
        prompt[str(node["id"])] = {
            "inputs": inputs,
            "class_type": node["type"],
            "_meta": {"title": node.get("title") or cdef.display_name},
        }
    return prompt


# ---------------------------------------------------------------- output


def js_numbers(value):
    """Floats as JavaScript's JSON.stringify writes them: 24.0 -> 24."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: js_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [js_numbers(v) for v in value]
    return value


def dumps(value) -> str:
    return json.dumps(js_numbers(value), indent=2, ensure_ascii=False) + "\n"


def generate(catalogue: dict, from_full: bool) -> dict[Path, str]:
    files: dict[Path, str] = {}
    used = set()
    for g in specs():
        used |= {n.cls for n in g.nodes}
        workflow = build_ui(g, catalogue)
        files[WORKFLOWS / "ui" / f"{g.name}.json"] = dumps(workflow)
        files[WORKFLOWS / "api" / f"{g.name}.api.json"] = dumps(
            graph_to_prompt(workflow, catalogue))
    if from_full:
        files[NODE_DEFS] = dumps(subset(catalogue, used))
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="fail if the committed files differ from the generated ones")
    parser.add_argument("--object-info", type=Path,
                        help=f"node catalogue (default: {FULL_CATALOGUE} if present, "
                             f"else {NODE_DEFS.relative_to(ROOT)})")
    args = parser.parse_args()
    try:
        catalogue, from_full = load_catalogue(args.object_info)
        files = generate(catalogue, from_full)
    except SpecError as e:
        print(f"generate.py: {e}", file=sys.stderr)
        return 2
    stray = sorted(set((WORKFLOWS / "ui").glob("*.json")) - set(files))
    if args.check:
        bad = []
        for path, text in files.items():
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            if old != text:
                bad.append(path)
                diff = difflib.unified_diff(old.splitlines(), text.splitlines(),
                                            str(path.relative_to(ROOT)), "generated",
                                            lineterm="", n=1)
                print("\n".join(list(diff)[:40]), file=sys.stderr)
        for path in stray:
            print(f"{path.relative_to(ROOT)}: not generated by this script", file=sys.stderr)
        if bad or stray:
            print(f"generate.py --check: {len(bad) + len(stray)} file(s) out of date; "
                  "run python3 workflows/tools/generate.py", file=sys.stderr)
            return 1
        print(f"generate.py --check: {len(files)} files up to date")
        return 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    for path in stray:
        print(f"note: {path.relative_to(ROOT)} is not generated by this script")
    return 0


if __name__ == "__main__":
    sys.exit(main())
