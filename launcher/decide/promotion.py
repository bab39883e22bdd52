"""The promote step: a report of which model is better with the command that promotes the
candidate, or (``auto``) the better candidate made production (``launcher.decide.production``).
The report goes to RUN_DIR/promotion.json and report.html."""
import os
import shlex
import time

from launcher.decide import production as production_lib
from launcher.decide import report as report_lib
from launcher.errors import StepFailed
from tfproc import fsutil


def promote_command(candidate_dir, production_dir, run):
    """The promote command, shell-quoted: pasted, it gets exactly these paths."""
    return shlex.join(["python", "-m", "launcher", "pipeline", "promote", "--candidate", str(candidate_dir),
                       "--production", str(production_dir), "--run", str(run)])


def promote(comparison, candidate_dir, production_dir, mode="manual", folder="", run=""):
    """``manual``: a report of which is better and the command that promotes the candidate.
    ``auto``: promote a better candidate (launcher.decide.production: a write-once version and the pointer
    replaced). The report goes to FOLDER/promotion.json. Run again, it changes nothing more."""
    run = run or os.path.basename(folder.rstrip("/")) or "manual"
    report = {"metric": comparison["metric"], "candidate": comparison["candidate"],
              "production": comparison.get("production"), "better": comparison["better"],
              "verdict": comparison.get("verdict"), "difference": comparison.get("difference"),
              "ci95": comparison.get("ci95"),
              "reason": comparison.get("reason", ""), "mode": mode, "candidate_dir": candidate_dir,
              "production_dir": production_dir, "promoted": False, "run": run, "time": round(time.time(), 1),
              "promote_command": promote_command(candidate_dir, production_dir, run)}
    try:
        current = production_lib.read_pointer(production_dir) if production_dir else None
    except production_lib.PromotionError as error:
        raise StepFailed(str(error))
    if ((current or {}).get("current") or {}).get("source") == production_lib.normal_path(candidate_dir):
        report.update(promoted=True, reason="the candidate is production already")     # a run done again
    elif mode == "auto" and comparison["better"]:
        install(candidate_dir, production_dir, comparison, run)
        report["promoted"] = True
    if folder:
        fsutil.write_json(fsutil.join(folder, "promotion.json"), report)
        report["report"] = report_lib.write(folder, comparison, report, candidate_dir, run)
    return report


def run_comparison(candidate_dir):
    """The comparison a pipeline run made of ``candidate_dir`` (RUN_DIR/candidate or finetuned):
    RUN_DIR/comparison.json, when RUN_DIR/promotion.json names this candidate; else None. A
    promotion by hand then records the same metrics as an automatic one."""
    folder = os.path.dirname(production_lib.normal_path(candidate_dir))
    try:
        report = fsutil.read_json_or_none(fsutil.join(folder, "promotion.json")) or {}
        if production_lib.normal_path(report.get("candidate_dir") or "") != production_lib.normal_path(candidate_dir):
            return None
        return fsutil.read_json_or_none(fsutil.join(folder, "comparison.json"))
    except (OSError, ValueError):
        return None


def install(candidate_dir, production_dir, comparison=None, run="manual"):
    """Make the candidate production, as version ``run``; returns the model's folder."""
    try:
        pointer, _ = production_lib.promote(candidate_dir, production_dir, run, comparison)
    except production_lib.PromotionError as error:
        raise StepFailed(str(error))
    return pointer["current"]["model"]
