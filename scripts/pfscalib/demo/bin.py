"""Stand-ins for drp_stella's command-line scripts the seed calls, with the same positional arguments
and options: certifyDetectorMaps.py, defineFiberProfilesInputs.py, butlerCleanRun.py, butlerCertify.py,
butlerDecertify.py. Built on pfscalib.job.butler (daf_butler API).

Never installed under those names (they would shadow a site's real scripts): make_repo writes a shim per
script into <repo>/bin (make_repo.SHIMS), which the demo puts first on PATH."""

from __future__ import annotations

import argparse
import sys

from lsst.daf.butler import Butler, DatasetType

from pfscalib.job import butler as butlerops
from pfscalib.plan.visits import parse_visit_list


def _dates(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--begin-date", default=None, help="TAI ISO-8601; omitted = unbounded")
    parser.add_argument("--end-date", default=None, help="TAI ISO-8601; omitted = unbounded")


def _ids(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", nargs="*", action="append", default=None, help="KEY=VALUE ... (repeat to OR)")


def _run(main, argv):
    try:
        return main(argv)
    except (ValueError, LookupError, RuntimeError) as exc:
        print(f"{sys.argv[0].rsplit('/', 1)[-1]}: error: {exc}", file=sys.stderr)
        return 1


def certify_detector_maps(argv: list[str] | None = None) -> int:
    def main(argv):
        p = argparse.ArgumentParser(
            prog="certifyDetectorMaps.py",
            description="Copy detectorMap candidates as detectorMap_calib and certify them",
        )
        p.add_argument("repo")
        p.add_argument("collection", help="input collection (a chain is searched in all its children)")
        p.add_argument("target", help="CALIBRATION collection")
        p.add_argument("--instrument", default="PFS")
        p.add_argument("--datasetType", default="detectorMap_candidate")
        p.add_argument(
            "--transfer",
            default="copy",
            choices=["auto", "move", "copy", "direct", "split", "link", "hardlink", "relsymlink", "symlink"],
        )
        _dates(p)
        a = p.parse_args(argv)
        butler = Butler.from_config(a.repo, writeable=True)
        refs = butlerops.query_refs(butler, a.datasetType, a.collection, {"instrument": a.instrument}, find_first=False)
        if not refs:
            raise LookupError(f"no {a.datasetType} datasets in {a.collection}")
        with butler.transaction():
            copies = butlerops.copy_datasets(butler, refs, "detectorMap_calib", f"{a.collection}/certify")
            butlerops.certify(butler, a.target, copies, butlerops.make_timespan(a.begin_date, a.end_date))
        print(f"certified {len(copies)} detectorMap_calib in {a.target}")
        return 0

    return _run(main, argv)


def define_fiber_profiles_inputs(argv: list[str] | None = None) -> int:
    def main(argv):
        p = argparse.ArgumentParser(
            prog="defineFiberProfilesInputs.py",
            description="Define a profiles_run from groups of bright and dark visits",
        )
        p.add_argument("repo")
        p.add_argument("instrument")
        p.add_argument("name", help="profiles_run name")
        p.add_argument("--bright", action="append", default=[], help="visit LIST (a..b[:stride] joined by ^)")
        p.add_argument("--dark", action="append", default=[], help="visit LIST; one per --bright, or none")
        p.add_argument("--update", action="store_true", help="allow changed dimension records")
        a = p.parse_args(argv)
        if a.dark and len(a.dark) != len(a.bright):
            raise ValueError(f"{len(a.bright)} --bright but {len(a.dark)} --dark: give one --dark per --bright")
        if not a.bright:
            raise ValueError("at least one --bright is required")
        butler = Butler.from_config(a.repo, writeable=True)
        registry = butler.registry
        registry.registerDatasetType(
            DatasetType(
                "profiles_visits",
                ("instrument", "profiles_run", "profiles_group"),
                "StructuredDataDict",
                universe=registry.dimensions,
            )
        )
        run = f"{a.instrument}/fiberProfilesInputs"
        registry.registerRun(run)
        instrument = a.instrument.split("/")[0]
        with butler.transaction():
            registry.syncDimensionData("profiles_run", {"instrument": instrument, "run": a.name}, update=a.update)
            for group, bright in enumerate(a.bright):
                data = {"bright": parse_visit_list(bright), "dark": parse_visit_list(a.dark[group]) if a.dark else []}
                key = {"instrument": instrument, "profiles_run": a.name, "group_num": group}
                registry.syncDimensionData("profiles_group", key, update=a.update)
                for visit in data["bright"] + data["dark"]:
                    registry.syncDimensionData(
                        "profiles_visits",
                        {"instrument": instrument, "profiles_run": a.name, "profiles_group": group, "visit": visit},
                    )
                butler.put(
                    data, "profiles_visits", instrument=instrument, profiles_run=a.name, profiles_group=group, run=run
                )
        print(f"defined profiles_run {a.name} with {len(a.bright)} groups in {run}")
        return 0

    return _run(main, argv)


def butler_clean_run(argv: list[str] | None = None) -> int:
    def main(argv):
        p = argparse.ArgumentParser(prog="butlerCleanRun.py", description="Purge datasets from RUN collections")
        p.add_argument("repo")
        p.add_argument("collection", help="butler glob matched against RUN collections")
        p.add_argument("datasetType", nargs="+")
        _ids(p)
        p.add_argument("--where", default="")
        p.add_argument("--limit", type=int, default=None, help="accepted for compatibility (ignored, as upstream)")
        p.add_argument("-n", "--dry-run", action="store_true")
        a = p.parse_args(argv)
        butler = Butler.from_config(a.repo, writeable=True)
        butlerops.clean_runs(butler, a.collection, a.datasetType, butlerops.parse_ids(a.id), a.where, a.dry_run)
        return 0

    return _run(main, argv)


def butler_certify(argv: list[str] | None = None) -> int:
    def main(argv):
        p = argparse.ArgumentParser(prog="butlerCertify.py", description="Certify datasets, optionally by data ID")
        p.add_argument("repo")
        p.add_argument("inputCollection")
        p.add_argument("outputCollection")
        p.add_argument("datasetType")
        p.add_argument("--search-all-inputs", action="store_true")
        _dates(p)
        _ids(p)
        a = p.parse_args(argv)
        butler = Butler.from_config(a.repo, writeable=True)
        collection = a.inputCollection if a.search_all_inputs else butlerops.first_run(butler, a.inputCollection)
        refs = []
        for data_id in butlerops.parse_ids(a.id) or [{}]:
            refs += butlerops.query_refs(butler, a.datasetType, collection, data_id, find_first=False)
        if not refs:
            raise RuntimeError(f"no {a.datasetType} datasets found in {collection}")
        butlerops.certify(butler, a.outputCollection, refs, butlerops.make_timespan(a.begin_date, a.end_date))
        return 0

    return _run(main, argv)


def butler_decertify(argv: list[str] | None = None) -> int:
    def main(argv):
        p = argparse.ArgumentParser(prog="butlerDecertify.py", description="Decertify datasets over a range")
        p.add_argument("repo")
        p.add_argument("collection")
        p.add_argument("datasetType")
        _dates(p)
        _ids(p)
        a = p.parse_args(argv)
        butler = Butler.from_config(a.repo, writeable=True)
        butlerops.decertify(
            butler,
            a.collection,
            a.datasetType,
            butlerops.make_timespan(a.begin_date, a.end_date),
            butlerops.parse_ids(a.id),
        )
        return 0

    return _run(main, argv)
