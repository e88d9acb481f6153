"""``mmd submit {joint | video-to-audio FILE | audio-to-video FILE} --server URL --out OUT.mp4``:
submit a job to a running service, show its progress (from the event stream), download the MP4.
Exits 1 with the service's message when the submission or the job fails."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from client.api import MODES, Client, Event, JobFailed, ServiceError

BAR = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", choices=MODES, help="what to generate")
    parser.add_argument("file", nargs="?", help="the video (video-to-audio) or audio "
                                                "(audio-to-video) to condition on")
    parser.add_argument("--server", default=os.environ.get("MMD_SERVER", "http://127.0.0.1:8000"),
                        help="the gateway's URL (default $MMD_SERVER or http://127.0.0.1:8000)")
    parser.add_argument("--api-key", default=os.environ.get("MMD_API_KEY"),
                        help="API key (default $MMD_API_KEY; none in open mode)")
    parser.add_argument("--out", required=True, help="where to write the MP4")
    parser.add_argument("--seed", type=int, help="random seed (default: the service picks one)")
    parser.add_argument("--model", help="configured model name")
    parser.add_argument("--preset", choices=("fast", "official"), help="sampler defaults")
    parser.add_argument("--steps", type=int, help="base sampler steps")
    parser.add_argument("--sampler", help="base sampler name (e.g. dpm_solver, ddim, ddpm)")
    parser.add_argument("--sr-steps", type=int, help="super-resolution sampler steps")
    parser.add_argument("--no-sr", action="store_true", help="skip super-resolution")
    parser.add_argument("--num-samples", type=int, help="outputs to generate (--out gets the "
                                                        "first; the others get -1, -2 ...)")
    parser.add_argument("--start-s", type=float, help="where the window starts in the upload")
    parser.add_argument("--duration-s", type=float, help="seconds of the upload to cover from "
                        "--start-s (default: one model window)")
    parser.add_argument("--guidance-scale", type=float, help="conditional guidance scale")
    parser.add_argument("--prompt", help="steer the job toward this text with the model's "
                        "aligner (the demo model: red, green or blue)")
    parser.add_argument("--prompt-scale", type=float, help="prompt guidance strength (default: "
                        "the aligner's)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=JSON",
                        help="any other API parameter, dotted for nested ones "
                             "(e.g. --param sampler.order=2); repeatable")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_params(args: argparse.Namespace) -> dict[str, Any]:
    """The API parameters of the command line (flags first, then ``--param``)."""
    p: dict[str, Any] = {"seed": args.seed, "model": args.model, "preset": args.preset,
                         "num_samples": args.num_samples, "start_s": args.start_s,
                         "duration_s": args.duration_s,
                         "guidance_scale": args.guidance_scale, "prompt": args.prompt,
                         "prompt_scale": args.prompt_scale}
    sampler = {k: v for k, v in (("name", args.sampler), ("steps", args.steps)) if v is not None}
    sr: dict[str, Any] = {"enabled": False} if args.no_sr else {}
    if args.sr_steps is not None:
        sr["steps"] = args.sr_steps
    if sampler:
        p["sampler"] = sampler
    if sr:
        p["super_resolution"] = sr
    for item in args.param:
        name, eq, raw = item.partition("=")
        if not eq or not name:
            raise ValueError(f"--param {item!r}: expected NAME=VALUE, e.g. sampler.order=2")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw  # a bare string
        *parents, leaf = name.split(".")
        node = p
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return {k: v for k, v in p.items() if v is not None}


def progress_bar(stream: TextIO) -> Any:
    def show(e: Event) -> None:
        done = round(e.fraction * BAR)
        what = e.stage or e.status
        if e.status == "queued" and e.queue_position is not None:
            what = f"queued, position {e.queue_position + 1}"
        elif e.total:
            what = f"{what} {e.step}/{e.total}"
        stream.write(f"\r[{'#' * done}{'.' * (BAR - done)}] {e.fraction * 100:5.1f}% {what:<24}")
        stream.flush()
    return show


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    if args.mode == "joint" and args.file:
        err.write("mmd submit: joint generation takes no FILE\n")
        return 2
    if args.mode != "joint" and not args.file:
        err.write(f"mmd submit: {args.mode} needs a FILE to condition on\n")
        return 2
    try:
        params = build_params(args)
    except ValueError as exc:
        err.write(f"mmd submit: {exc}\n")
        return 2
    try:
        with Client(args.server, args.api_key) as client:
            job = client.generate(args.mode, args.file, **params)
            if not args.quiet:
                err.write(f"job {job.id}\n")
            doc = job.wait(on_progress=None if args.quiet else progress_bar(err))
            if not args.quiet:
                err.write("\n")
            n = int(doc["result"].get("num_samples", 1))
            stem, dot, ext = args.out.rpartition(".")
            for i in range(n):
                out = args.out if i == 0 else (f"{stem}-{i}.{ext}" if dot else f"{args.out}-{i}")
                job.download(out, sample=i)
                print(out)
    except JobFailed as exc:
        err.write(f"\nmmd submit: {exc}\n")
        return 1
    except ServiceError as exc:
        err.write(f"\nmmd submit: the service said: {exc}\n")
        return 1
    except OSError as exc:
        err.write(f"\nmmd submit: cannot reach {args.server} or write {args.out}: {exc}\n")
        return 1
    return 0
