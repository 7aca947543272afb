"""Command line: ``jaxllm train | config show | tokenizer train``.

    jaxllm pipeline [CONFIG] [STAGE.key=value ...]  pre-train -> SFT -> reward model -> PPO, then a report
    jaxllm train CONFIG [key=value ...]      train (resumes if the run dir has checkpoints)
    jaxllm launch --local N COMMAND ...      run a command as N local processes (multi-host on one machine)
    jaxllm mesh CONFIG [key=value ...]       print the mesh and which process drives each device
    jaxllm config show CONFIG [key=value ...] print the resolved config
    jaxllm config docs                       print the configuration reference (docs/CONFIG.md)
    jaxllm data clean CONFIG [key=value ...] [--out FILE]  run data.clean and print what each step removed
    jaxllm data prepare CONFIG [key=value ...]  clean (if enabled), tokenize, write data.prepared_dir
    jaxllm data tfds-build NAME --paths FILES --data-dir DIR   local files -> TFDS dataset
    jaxllm tokenizer train CONFIG [key=value ...] [--out PATH]
                                             train the SentencePiece tokenizer on the configured data
    jaxllm generate CHECKPOINT --prompt TEXT [--prompt TEXT ...]   sample (chat template for SFT models)
    jaxllm chat CHECKPOINT                   interactive chat that keeps the conversation
    jaxllm eval CHECKPOINT [--questions builtin|FILE] [--text FILE ...]   accuracy and perplexity
    jaxllm sweep SWEEP.yaml [--dry-run | --print [--launcher plain|local|slurm]]   run a sweep's runs
    jaxllm compare RUN_OR_SWEEP_DIR ... [--metric M] [--sort COL] [--out PREFIX]   a table of runs
    jaxllm plot RUN_OR_SWEEP_DIR ... --metric M [--metric M ...] [--out DIR]   PNG curves per metric
    jaxllm convert from-hf HF_DIR OUT        a Hugging Face GPT-2/Llama/Mistral model -> a jaxllm run dir
    jaxllm convert to-hf CHECKPOINT OUT [--part policy|critic] [--dtype D] [--merge]   a jaxllm run -> config.json +
                                             safetensors (a LoRA run: a PEFT adapter, or merged weights)

CONFIG is a YAML path or a name under configs/ (``pretrain/demo``). Mistakes in
config, data or files print one ``error:`` line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from jaxllm.errors import UserError

DEFAULT_CONFIG = "pretrain/demo"


def _split_args(items: list[str], default: str = DEFAULT_CONFIG) -> tuple[str, list[str]]:
    """First item is the config unless it is already an override (``a.b=c``)."""
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return default, items


def _config(args):
    """The checked config of ``CONFIG [key=value ...]`` (every command that takes one)."""
    from jaxllm.config import load_config

    return load_config(*_split_args(args.items))


def cmd_train(args) -> int:
    if args.allow_config_change:
        args.items = [*args.items, "checkpoint.allow_config_change=true"]
    cfg = _config(args)
    from jaxllm.parallel.distributed import initialize
    from jaxllm.train.loop import train

    initialize(cfg.distributed)
    train(cfg)
    return 0


def cmd_pipeline(args) -> int:
    path, overrides = _split_args(args.items, "pipeline/demo")
    from jaxllm.pipeline.run import run_pipeline

    run_pipeline(path, overrides)
    return 0


def cmd_launch(args) -> int:
    from jaxllm.parallel.local_launch import run_local

    if not args.command_line:
        raise UserError("launch: give the jaxllm command to run, e.g. `jaxllm launch --local 2 train pretrain/demo`.")
    if args.command_line[0] == "launch":
        raise UserError("launch: the command to run cannot itself be `launch`.")
    per = args.devices_per_process or max(1, 8 // args.local)
    return run_local(args.local, args.command_line, per, args.grace)


def cmd_mesh(args) -> int:
    from jaxllm.parallel.distributed import initialize

    cfg = _config(args)
    initialize(cfg.distributed)
    import jax

    from jaxllm.parallel.mesh import describe, make_mesh, process_grid

    mesh = make_mesh(cfg.mesh)
    if jax.process_index() == 0:
        print(describe(mesh))
        print(process_grid(mesh))
    return 0


def cmd_config_show(args) -> int:
    from jaxllm.config import dump_yaml

    print(dump_yaml(_config(args)), end="")
    return 0


def cmd_config_docs(args) -> int:
    from jaxllm.config.docs import config_markdown

    print(config_markdown(), end="")
    return 0


def cmd_tokenizer_train(args) -> int:
    from pathlib import Path

    from jaxllm.data.prepare import load_corpus
    from jaxllm.data.tokenizer import train_tokenizer

    cfg = _config(args)
    corpus = load_corpus(cfg)
    tc = cfg.data.tokenizer
    tok = train_tokenizer(corpus.train_docs, tc.vocab_size, tc.model_type, tc.train_chars, tc.kind)
    out = Path(args.out) if args.out else Path(cfg.run.dir) / tok.filename
    tok.save(out)
    sample = corpus.train_docs[0][:80]
    kind = tc.model_type if tc.kind == "sentencepiece" else "byte-level BPE, tokenizer.json"
    print(f"wrote {out}: {tok.vocab_size} pieces ({kind}); "
          f"{sample!r} -> {len(tok.encode(sample))} tokens")
    return 0


def cmd_data_prepare(args) -> int:
    import json

    from jaxllm.data.prepare import prepare_dataset

    stats = prepare_dataset(_config(args))
    if stats.get("cleaning"):
        from jaxllm.data.clean import format_report
        print(format_report(stats["cleaning"]))
    print(json.dumps({k: v for k, v in stats.items() if k != "cleaning"}, indent=2))
    return 0


def cmd_data_clean(args) -> int:
    from jaxllm.data.clean import clean_to_jsonl

    cfg = _config(args)
    if args.executor:  # sharded files through datatrove's executors: corpora larger than one process
        from jaxllm.data.clean_dist import clean_sharded

        slurm = {"partition": args.slurm_partition, "time": args.slurm_time} if args.executor == "slurm" else None
        lines = clean_sharded(cfg.data, args.out, args.work, args.input, args.executor, args.tasks, args.workers, slurm)
    else:
        lines = clean_to_jsonl(cfg.data, args.out)
    print("\n".join(lines))
    return 0


def cmd_data_tfds_build(args) -> int:
    from jaxllm.data.tfds_source import build_local_dataset, build_tiny_shakespeare

    if args.name == "tiny_shakespeare":
        path = build_tiny_shakespeare(args.data_dir, args.paths[0] if args.paths else None)
    else:
        if not args.paths:
            from jaxllm.errors import UserError
            raise UserError(f"tfds-build {args.name}: give the files with --paths FILE [FILE ...] (globs allowed).")
        path = build_local_dataset(args.name, args.paths, args.data_dir, args.version, args.format, args.field, args.document,
                                   args.file_format)
    print(f"built {path}; use it with data.source=tfds:{args.name} data.data_dir={args.data_dir}")
    return 0


def _sampling(args):
    from jaxllm.model.decode import Sampling

    return Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    max_new_tokens=args.max_new_tokens).check()


def _chat_mode(args, loaded) -> bool:
    return loaded.is_chat_model if args.format == "auto" else args.format == "chat"


def cmd_generate(args) -> int:
    import jax

    from jaxllm.data.chat import Message
    from jaxllm.infer.load import load_checkpoint

    sampling = _sampling(args)  # flags checked before the checkpoint loads
    loaded = load_checkpoint(args.checkpoint, args.set)
    key = jax.random.PRNGKey(args.seed)
    if _chat_mode(args, loaded):
        system = [Message("system", args.system)] if args.system else []
        outs = loaded.reply([system + [Message("user", p)] for p in args.prompt], sampling, key)
        texts = [o["text"] for o in outs]
    else:
        outs = None
        texts = [p + t for p, t in zip(args.prompt, loaded.complete(args.prompt, sampling, key))]
    for i, t in enumerate(texts):
        print(t if len(texts) == 1 else f"[{i}] {t}")
        if args.logprobs and outs is not None:
            lp = outs[i]["logprobs"]
            print(f"    {len(lp)} tokens, sum log p = {float(lp.sum()):.3f}")
    return 0


def cmd_chat(args) -> int:
    import jax

    from jaxllm.data.chat import Message
    from jaxllm.infer.load import load_checkpoint

    sampling = _sampling(args)
    loaded = load_checkpoint(args.checkpoint, args.set)
    sampling.check(loaded.tokenizer.vocab_size)
    history = [Message("system", args.system)] if args.system else []
    key = jax.random.PRNGKey(args.seed)
    print(f"chatting with {loaded.path} ({loaded.cfg.objective.name} model); /reset starts over, /quit or Ctrl-D ends")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset":
            history = history[:1] if args.system else []
            continue
        if not line:
            continue
        history.append(Message("user", line))
        history = loaded.fit_history(history, args.max_new_tokens)
        key, sub = jax.random.split(key)
        try:
            out = loaded.reply([history], sampling, sub)[0]
        except UserError as e:
            history.pop()
            print(f"error: {e}")
            continue
        history.append(Message("assistant", out["text"]))
        print(f"assistant> {out['text']}" + ("" if out["stopped"] else "  [max_new_tokens reached]"))


def cmd_eval(args) -> int:
    import json

    from jaxllm.infer.evaluate import load_questions, perplexity, qa_accuracy
    from jaxllm.infer.load import load_checkpoint

    report = {"checkpoint": str(args.checkpoint)}
    if args.pairs:
        from jaxllm.infer.preference import preference_accuracy

        res = preference_accuracy(args.checkpoint, args.pairs, args.on_error)
        report["preference"] = res
        skipped = f", {res['skipped_records']} bad records skipped" if res["skipped_records"] else ""
        print(f"{', '.join(args.pairs)}: {res['rankings']} rankings, {res['pairs']} ordered pairs{skipped}, "
              f"{res['responses_cut']} responses cut at train.seq_len; {res['score']} ranks the better one higher in "
              f"{res['accuracy']:.1%} (the shorter response: {res['length_baseline']:.1%})")
    loaded = load_checkpoint(args.checkpoint, args.set) if args.questions or args.text else None
    if args.questions:
        qs = load_questions(args.questions, loaded)[: args.limit or None]
        fmt = args.prompt_format if args.prompt_format != "auto" else ("chat" if loaded.is_chat_model else "qa")
        res = qa_accuracy(loaded, qs, fmt, args.max_new_tokens)
        rows = res.pop("rows")
        report["qa"] = {"questions_from": args.questions, "prompt_format": fmt, **res, "rows": rows}
        print(f"{args.questions} ({fmt} prompts): {res['questions']} questions, exact match {res['exact_match']:.1%}, "
              f"contains answer {res['contains_answer']:.1%}, ended the turn {res['stopped']:.1%}")
        for kind, k in res["by_kind"].items():
            print(f"  {kind:<22} n={k['n']:<4} exact {k['exact_match']:.1%}  contains {k['contains_answer']:.1%}")
        for r in rows[: args.show]:
            print(f"  Q: {r['question']}\n  A: {r['reply']}   [{'ok' if r['contains_answer'] else 'wrong'}]")
    if args.text:
        ppl = perplexity(loaded, args.text, args.seq_len)
        report["perplexity"] = ppl
        print(f"perplexity on {', '.join(args.text)}: {ppl['perplexity']:.3f} (nll {ppl['nll']:.4f}, "
              f"{ppl['tokens']:,} tokens, {ppl['documents']} documents)")
    if not args.questions and not args.text and not args.pairs:
        raise UserError("nothing to evaluate: give --questions builtin|FILE, --text FILE and/or --pairs FILE.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


def cmd_sweep(args) -> int:
    from jaxllm.sweep.runner import check_configs, commands, run_sweep
    from jaxllm.sweep.spec import load_sweep

    sweep = load_sweep(args.sweep)
    if args.dry_run or args.print:
        check_configs(sweep)
        if args.print:
            print("\n".join(commands(sweep, args.launcher, args.processes)))
            return 0
        print(f"{len(sweep.runs)} runs of {sweep.base} in {sweep.dir}; varied: {', '.join(sweep.varied) or 'nothing'}")
        for run in sweep.runs:
            print(f"  {run.name}")
        return 0
    status = run_sweep(sweep)
    failed = [n for n, s in status.items() if s.startswith("failed")]
    print(f"sweep {sweep.dir}: {sum(s != 'skipped' for s in status.values()) - len(failed)} ran, "
          f"{sum(s == 'skipped' for s in status.values())} skipped, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else "") + f"; compare with `jaxllm compare {sweep.dir}`")
    return 1 if failed else 0


def cmd_compare(args) -> int:
    from pathlib import Path

    from jaxllm.sweep.compare import collect, render, table, write_csv

    runs, varied = collect(args.dirs)
    columns, rows = table(runs, varied, args.metric or None, args.sort, args.descending)
    text, md = render(columns, rows)
    print(text)
    prefix = Path(args.out) if args.out else (Path(args.dirs[0]) / "compare" if len(args.dirs) == 1 else Path("compare"))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    write_csv(prefix.with_suffix(".csv"), columns, rows)
    prefix.with_suffix(".md").write_text(md)
    print(f"wrote {prefix.with_suffix('.csv')} and {prefix.with_suffix('.md')}")
    return 0


def cmd_plot(args) -> int:
    from pathlib import Path

    from jaxllm.sweep.compare import collect
    from jaxllm.sweep.plot import plot_metric

    runs, varied = collect(args.dirs)
    out_dir = Path(args.out) if args.out else (Path(args.dirs[0]) if len(args.dirs) == 1 else Path("."))
    for m in args.metric:
        path = out_dir / f"{m}.png"
        n = plot_metric(runs, varied, m, path)
        print(f"wrote {path} ({n} lines)")
    return 0


def cmd_convert_from_hf(args) -> int:
    from jaxllm.interop.convert import from_hf

    for line in from_hf(args.hf_dir, args.out):
        print(line)
    return 0


def cmd_convert_to_hf(args) -> int:
    from jaxllm.interop.convert import to_hf

    for line in to_hf(args.checkpoint, args.out, part=args.part, dtype=args.dtype,
                      max_shard_bytes=int(args.max_shard_gb * (1 << 30)), overwrite=args.overwrite, merge=args.merge):
        print(line)
    return 0


def _add_sampling(p: argparse.ArgumentParser, temperature: float) -> None:
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=temperature, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--system", help="a system message first (chat template)")
    p.add_argument("--set", nargs="*", default=[], metavar="key=value", help="config overrides, e.g. mesh.tensor=2")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxllm", description="Pre-train, fine-tune and align language models in JAX.")
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("pipeline", help="pre-train -> SFT -> reward model -> PPO, then a report on held-out prompts")
    pl.add_argument("items", nargs="*", metavar="[CONFIG] [STAGE.key=value ...]")
    pl.set_defaults(fn=cmd_pipeline)

    tr = sub.add_parser("train", help="train with a config file and key=value overrides")
    tr.add_argument("items", nargs="*", metavar="CONFIG [key=value ...]")
    tr.add_argument("--allow-config-change", action="store_true",
                    help="resume even though keys that break an exact resume changed (printed either way)")
    tr.set_defaults(fn=cmd_train)

    la = sub.add_parser("launch", help="run a jaxllm command as N local processes (a multi-host job on one machine)",
                        description="Each process gets JAX_COORDINATOR_ADDRESS (127.0.0.1, a free port), "
                                    "JAX_NUM_PROCESSES, JAX_PROCESS_ID and its own fake CPU devices. "
                                    "SLURM, TPU pods and Kubernetes: see launch/ and docs/LAUNCH.md.")
    la.add_argument("--local", type=int, required=True, metavar="N", help="number of processes on this machine")
    la.add_argument("--devices-per-process", type=int, default=0, metavar="D",
                    help="fake CPU devices per process (default 8 // N, at least 1)")
    la.add_argument("--grace", type=float, default=150.0, metavar="S",
                    help="after a process fails, kill any still running this many seconds later (default 150; "
                         "they normally stop by themselves within distributed.heartbeat_timeout_s)")
    la.add_argument("command_line", nargs=argparse.REMAINDER, metavar="COMMAND ...",
                    help="the jaxllm command, e.g. train pretrain/demo train.steps=100")
    la.set_defaults(fn=cmd_launch)

    ms = sub.add_parser("mesh", help="print the device mesh a config gets here (after joining a multi-process job)")
    ms.add_argument("items", nargs="*", metavar="CONFIG [key=value ...]")
    ms.set_defaults(fn=cmd_mesh)

    cf = sub.add_parser("config", help="inspect configs")
    cf_sub = cf.add_subparsers(dest="config_command", required=True)
    show = cf_sub.add_parser("show", help="print the resolved config")
    show.add_argument("items", nargs="*", metavar="CONFIG [key=value ...]")
    show.set_defaults(fn=cmd_config_show)
    docs = cf_sub.add_parser("docs", help="print the configuration reference (docs/CONFIG.md) as Markdown")
    docs.set_defaults(fn=cmd_config_docs)

    dt = sub.add_parser("data", help="data tools")
    dt_sub = dt.add_subparsers(dest="data_command", required=True)
    dp = dt_sub.add_parser("prepare", help="read, split, tokenize and write the configured data to data.prepared_dir")
    dp.add_argument("items", nargs="*", metavar="CONFIG [key=value ...]")
    dp.set_defaults(fn=cmd_data_prepare)

    dc = dt_sub.add_parser("clean", help="run the data.clean steps on the configured source and print what each removed")
    dc.add_argument("items", nargs="*", metavar="CONFIG [key=value ...]")
    dc.add_argument("--out", help="in-process: also write the kept documents to this JSONL file; "
                                  "with --executor: the folder for the cleaned JSONL shards")
    dc.add_argument("--executor", choices=("local", "slurm", "ray"),
                    help="run as datatrove stages over JSONL shards: local worker processes, SLURM jobs or Ray")
    dc.add_argument("--input", help="with --executor: a folder of JSONL(.gz) shards (default: the configured source, sharded)")
    dc.add_argument("--work", help="with --executor: folder for intermediate files and stage logs (re-runs resume)")
    dc.add_argument("--tasks", type=int, default=4, help="with --executor: shards processed in parallel per stage")
    dc.add_argument("--workers", type=int, default=2, help="with --executor: tasks running at once")
    dc.add_argument("--slurm-partition", default="cpu", help="with --executor slurm")
    dc.add_argument("--slurm-time", default="02:00:00", help="with --executor slurm: time limit per task")
    dc.set_defaults(fn=cmd_data_clean)

    tb = dt_sub.add_parser("tfds-build", help="make a TFDS dataset (array_record) from local files, or tiny_shakespeare offline")
    tb.add_argument("name", help="dataset name (lower_snake_case); tiny_shakespeare builds the catalog dataset offline")
    tb.add_argument("--paths", nargs="*", default=[], help="text/JSONL files or globs (tiny_shakespeare: its input.txt)")
    tb.add_argument("--data-dir", required=True, help="TFDS data directory to write into")
    tb.add_argument("--version", default="1.0.0")
    tb.add_argument("--format", choices=("text", "jsonl"), default="text")
    tb.add_argument("--field", default="text", help="JSONL field with the text")
    tb.add_argument("--document", choices=("blocks", "file"), default="blocks",
                    help="text files: a document per blank-line block, or the whole file as one")
    tb.add_argument("--file-format", choices=("array_record", "tfrecord"), default="array_record",
                    help="array_record (read without TensorFlow) or tfrecord (needs TensorFlow: extra tf)")
    tb.set_defaults(fn=cmd_data_tfds_build)

    tk = sub.add_parser("tokenizer", help="tokenizer tools")
    tk_sub = tk.add_subparsers(dest="tokenizer_command", required=True)
    tt = tk_sub.add_parser("train", help="train a SentencePiece tokenizer on the configured data")
    tt.add_argument("items", nargs="*", metavar="CONFIG [key=value ...]")
    tt.add_argument("--out", help="output .model path (default <run.dir>/tokenizer.model)")
    tt.set_defaults(fn=cmd_tokenizer_train)

    ge = sub.add_parser("generate", help="generate from a checkpoint (KV-cache decoder)")
    ge.add_argument("checkpoint", help="run dir, its checkpoints/ or checkpoints/<step>")
    ge.add_argument("--prompt", action="append", required=True, help="a prompt (repeat for a batch)")
    ge.add_argument("--format", choices=("auto", "chat", "raw"), default="auto",
                    help="chat: the prompt is a user message; raw: plain continuation; auto: chat for fine-tuned models")
    ge.add_argument("--logprobs", action="store_true", help="also print the sampled tokens' total log-probability")
    _add_sampling(ge, 0.8)
    ge.set_defaults(fn=cmd_generate)

    ch = sub.add_parser("chat", help="chat with a fine-tuned checkpoint in the terminal")
    ch.add_argument("checkpoint")
    _add_sampling(ch, 0.0)
    ch.set_defaults(fn=cmd_chat)

    ev = sub.add_parser("eval", help="question-answer accuracy and perplexity of a checkpoint")
    ev.add_argument("checkpoint")
    ev.add_argument("--questions", help="builtin (held-out facts), builtin:train, or a JSONL of {question, answer, contains?}")
    ev.add_argument("--prompt-format", choices=("auto", "chat", "qa"), default="auto",
                    help="chat template, or 'Question: ...\\nAnswer:' text (auto: chat for fine-tuned models)")
    ev.add_argument("--text", nargs="*", default=[], help="plain-text or JSONL files for perplexity")
    ev.add_argument("--pairs", nargs="*", default=[], help="rankings/pairs JSONL files: preference accuracy of a reward "
                    "model or DPO run, beside the shorter-response baseline")
    ev.add_argument("--on-error", choices=("raise", "skip"), default="skip", help="bad records in --pairs files")
    ev.add_argument("--seq-len", type=int, default=None, help="perplexity window (default: the model's max_seq_len)")
    ev.add_argument("--max-new-tokens", type=int, default=32)
    ev.add_argument("--limit", type=int, default=0, help="only the first N questions")
    ev.add_argument("--show", type=int, default=5, help="print this many question/reply pairs")
    ev.add_argument("--json", help="write the full report (with every reply) to this file")
    ev.add_argument("--set", nargs="*", default=[], metavar="key=value")
    ev.set_defaults(fn=cmd_eval)

    sw = sub.add_parser("sweep", help="run every configuration of a sweep file, one after another")
    sw.add_argument("sweep", help="a sweep YAML (base, grid, runs, seeds; see configs/sweep/)")
    sw.add_argument("--dry-run", action="store_true", help="check every config and list the runs")
    sw.add_argument("--print", action="store_true", help="print one launch command per run instead of running")
    sw.add_argument("--launcher", choices=("plain", "local", "slurm"), default="plain",
                    help="with --print: jaxllm train, launch/local.sh or sbatch launch/slurm.sbatch")
    sw.add_argument("--processes", type=int, default=2, help="with --launcher local: processes per run")
    sw.set_defaults(fn=cmd_sweep)

    cp = sub.add_parser("compare", help="a table of runs (or a sweep): varied keys, eval metrics, tokens/s, MFU, time")
    cp.add_argument("dirs", nargs="+", metavar="RUN_OR_SWEEP_DIR")
    cp.add_argument("--metric", action="append", default=[], help="metrics to show (default: every eval_* metric)")
    cp.add_argument("--sort", help="sort by this column (e.g. eval_loss, best_eval_loss, tokens_per_s)")
    cp.add_argument("--descending", action="store_true")
    cp.add_argument("--out", help="write PREFIX.csv and PREFIX.md (default: <sweep dir>/compare)")
    cp.set_defaults(fn=cmd_compare)

    pt = sub.add_parser("plot", help="PNG curves of metrics over steps, one line per setting, seed bands")
    pt.add_argument("dirs", nargs="+", metavar="RUN_OR_SWEEP_DIR")
    pt.add_argument("--metric", action="append", required=True, help="e.g. loss, eval_loss, score, kl, response_len")
    pt.add_argument("--out", help="directory for METRIC.png (default: the sweep dir)")
    pt.set_defaults(fn=cmd_plot)

    cv = sub.add_parser("convert", help="Hugging Face checkpoints in and out")
    cv_sub = cv.add_subparsers(dest="convert_command", required=True)
    fh = cv_sub.add_parser("from-hf", help="a Hugging Face model dir (config.json + *.safetensors), or a PEFT LoRA "
                           "adapter dir on a local base (merged) -> a jaxllm run dir")
    fh.add_argument("hf_dir")
    fh.add_argument("out")
    fh.set_defaults(fn=cmd_convert_from_hf)
    th = cv_sub.add_parser("to-hf", help="a jaxllm run (any path into it) -> config.json + safetensors for transformers")
    th.add_argument("checkpoint")
    th.add_argument("out")
    th.add_argument("--part", choices=("auto", "policy", "critic"), default="auto",
                    help="PPO runs: the policy (a causal LM, the default) or the critic (a sequence classifier)")
    th.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    th.add_argument("--max-shard-gb", type=float, default=5.0, help="split the weights into files of at most this size")
    th.add_argument("--overwrite", action="store_true",
                    help="write into a non-empty OUT, first removing the files an export writes there (config, "
                    "safetensors shards and index, tokenizer); other files stay")
    th.add_argument("--merge", action="store_true",
                    help="LoRA runs: write the whole model with the adapters folded in (default: a PEFT adapter, "
                    "adapter_config.json + adapter_model.safetensors, for the run's base)")
    th.set_defaults(fn=cmd_convert_to_hf)
    return p


def _stop(message: str, code: int, error: BaseException | None = None) -> int:
    """Print ``message``; in a multi-process job also tell the other processes and exit at once."""
    from jaxllm.parallel import distributed

    if distributed.is_multiprocess():
        import jax

        print(f"[process {jax.process_index()}] {message}", file=sys.stderr, flush=True)
        distributed.fail(message, code, peer_suspected=error is not None and distributed.looks_like_peer_loss(error))
    print(message, file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except UserError as e:
        return _stop(f"error: {e}", 2)
    except KeyboardInterrupt:
        return _stop("interrupted", 130)
    except Exception as e:
        from jaxllm.parallel import distributed

        if not distributed.is_multiprocess():
            raise
        if distributed.looks_like_peer_loss(e):  # another process died: `fail` names it in one line
            return _stop(f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}", 1, e)
        import traceback

        traceback.print_exc()
        return _stop(f"{type(e).__name__}: {e}", 1, e)


def run() -> None:
    """The ``jaxllm`` program: `main` under the malloc settings of `jaxllm.hostmem` (a CPU-only host)."""
    from jaxllm.hostmem import reexec_if_wanted

    reexec_if_wanted()
    sys.exit(main())


if __name__ == "__main__":
    run()
