"""Documentation tool (not a test, not a benchmark): screenshots of the OHIF viewer that MONAI Label serves at
/ohif/ from apps/vessa_label, taken in a real headless Chromium, for docs/user_guide_label.md.

Setup: two ACDC test volumes (cardiac cine-MRI, end-diastole; classes right ventricle / myocardium / left
ventricle) are written as DICOM MR series (patients ACDC-011 and ACDC-013; intensities x1000 so that the
viewer shows ordinary window/level values; the models min-max normalise) and uploaded to a throw-away Orthanc
with DICOMweb (tests/pacs.py). `monailabel start_server --studies <Orthanc's DICOMweb root>` serves the app on
them (tests/label_server.py) with the checkpoints of the ACDC stage-2 benchmark, on the CPU. Selenium then
drives the apt Chromium (software WebGL, SwiftShader) through OHIF and writes into --out:

    label_study_list.png     the OHIF study list at /ohif/, ACDC-011 expanded (its series, the MONAI Label mode)
    label_panel.png          ACDC-011 open in the MONAI Label mode, the panel connected, the VESSA models listed
    label_auto_seg.png       vessa_student's automatic segmentation of ACDC-011 shown over the MR. The panel's Run
                             is tried first; where it fails (the panel wants an NRRD answer, see the report
                             printed at the end) the same inference runs through the REST API, the result is
                             saved with save_label as 'final' (MONAI Label stores only final labels in the PACS,
                             as DICOM SEG) and OHIF opens that SEG
    label_active_learning.png  the Active Learning tab after Next Sample, vessa_disagreement picked in the Strategy
                             list (MONAI Label 0.8.5's panel still sends 'random': the server log is checked)
    label_point_prompts.png  ACDC-013, Point Prompts tab: vessa_interactive, label "left ventricle", two
                             foreground clicks placed on the left ventricle (their spot is taken from the
                             ground-truth label); Run is then pressed and its outcome reported (and shot as
                             label_point_prompts_result.png when it succeeds)

Nothing is drawn on the images: every pixel is what OHIF rendered. A JSON summary (timings, what the panel and
the server answered) is printed at the end.

Install what it needs (once; deliberately not in requirements.txt, this is a documentation tool):

    sudo apt-get install -y chromium chromium-driver orthanc orthanc-dicomweb     # Debian 12
    .venv/bin/pip install selenium                                               # drives /usr/bin/chromedriver

Run it from the repository root (about 1.5 minutes on 2 CPU cores); nothing is written outside --out and a
temporary folder, removed at the end unless --keep:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ohif_screenshots.py [--out docs/images] [--keep]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ohif_screenshots.py --serve-only   # PACS + server, then wait

--serve-only prints the URLs and waits (Ctrl-C / SIGTERM stops and cleans up): open OHIF yourself.
Inputs: runs/bench/stage2/acdc3/stage1/{assistant,bank}.pt and runs/bench/stage2/acdc3/unimatch+vessa/models/
model.pt (benchmarks/stage2.py), the ACDC data in ../shared/data/acdc.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
DATA = REPO.parent / "shared" / "data" / "acdc"
BENCH = REPO / "runs" / "bench" / "stage2" / "acdc3"
CHECKPOINTS = (BENCH / "stage1" / "assistant.pt", BENCH / "stage1" / "bank.pt", BENCH / "unimatch+vessa" / "models" / "model.pt")
VOLUMES = {"ACDC-011": ("patient011_frame01", 3), "ACDC-013": ("patient013_frame01", 4)}  # patient: (volume, slice shown)
SIZE = (1600, 1000)
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Segment colours of the DICOM SEG (OHIF shows a SEG with its recommended display colours).
COLORS = {"right ventricle": (64, 128, 255), "myocardium": (64, 220, 96), "left ventricle": (255, 80, 64)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------- the servers
def start_servers(tmp: Path, stack: contextlib.ExitStack) -> tuple:
    """Orthanc with the ACDC series, and the VESSA MONAI Label server on it; both stopped by ``stack``."""
    from label_server import LabelServer
    from pacs import OrthancServer, ensure_orthanc, upload_series, write_dicom_series

    missing = [str(p) for p in CHECKPOINTS if not p.is_file()]
    if missing:
        raise SystemExit(f"missing checkpoints {missing}: run benchmarks/stage2.py for ACDC first")
    reason = ensure_orthanc()
    if reason:
        raise SystemExit(f"no Orthanc: {reason}")
    models = tmp / "models"
    models.mkdir(parents=True)
    for path in CHECKPOINTS:
        shutil.copy(path, models / path.name)
    orthanc = stack.enter_context(OrthancServer(tmp / "orthanc"))
    studies = {}
    for patient, (name, _) in VOLUMES.items():
        image = nib.load(str(DATA / "imagesTr" / f"{name}.nii.gz"))
        volume = np.rint(np.asarray(image.dataobj, dtype=np.float64) * 1000.0)
        files = write_dicom_series(volume, tmp / "dcm" / name, image.affine, patient_id=patient, modality="MR",
                                   study_description="ACDC cine-MRI", series_description=f"{name} short axis")
        studies[patient] = upload_series(orthanc, files)
    log(f"Orthanc at {orthanc.url} holds {sorted(studies)}")
    env = {
        "MONAI_LABEL_DICOMWEB_SEARCH_FILTER": '{"Modality": "MR"}',
        "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(tmp / "cache"),  # else ~/.cache/monailabel/dicom
        "MONAI_LABEL_DICOMWEB_CACHE_EXPIRY": "5",  # series / SEG lists are cached 7200 s by default
        "OMP_NUM_THREADS": "1",
    }
    conf = {"ckpt_dir": str(models), "work_dir": str(tmp / "work"), "device": "cpu", "models": "vessa_student,vessa_assistant,vessa_interactive"}
    server = LabelServer(orthanc.dicomweb_root, conf, tmp / "monailabel.log", env=env, timeout=300)
    stack.callback(server.stop)
    log(f"MONAI Label at {server.url} (OHIF: {server.url}/ohif/), log {tmp / 'monailabel.log'}")
    return orthanc, server, studies


def series_of(orthanc, study_uid: str) -> str:
    with urllib.request.urlopen(f"{orthanc.dicomweb_root}/studies/{study_uid}/series?Modality=MR", timeout=30) as r:
        return json.loads(r.read())[0]["0020000E"]["Value"][0]


# ----------------------------------------------------------------------------------------------- the browser
class Browser:
    """Headless Chromium (apt) driven by Selenium, the page exactly SIZE pixels."""

    def __init__(self, base_url: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        # Cornerstone3D renders with WebGL: SwiftShader gives it one without a GPU or a display.
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={SIZE[0]},{SIZE[1]}",
                    "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
                    "--hide-scrollbars", "--force-device-scale-factor=1"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": SIZE[0], "height": SIZE[1], "deviceScaleFactor": 1, "mobile": False})
        self.base = base_url.rstrip("/")
        self.d.get(self.base + "/ohif/")
        # The panel's server URL defaults to http://<host>:8000/; this server runs on another port.
        self.d.add_cookie({"name": "MONAILABEL_SERVER_URL", "value": self.base + "/", "path": "/"})

    def quit(self) -> None:
        self.d.quit()

    def text(self) -> str:
        return self.d.execute_script("return document.body.innerText") or ""

    def wait(self, predicate, timeout: float, what: str, poll: float = 0.5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = predicate()
            except Exception:  # noqa: BLE001 - the SPA re-renders under us; try again
                value = None
            if value:
                return value
            time.sleep(poll)
        self.shot(Path(tempfile.gettempdir()) / "ohif_screenshots_timeout.png")
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (page shot in {tempfile.gettempdir()}/ohif_screenshots_timeout.png)")

    def xpath(self, xpath: str):
        from selenium.webdriver.common.by import By

        return self.d.find_elements(By.XPATH, xpath)

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.d.find_elements(By.CSS_SELECTOR, selector)

    def click_xpath(self, xpath: str, timeout: float = 30) -> None:
        element = self.wait(lambda: next((e for e in self.xpath(xpath) if e.is_displayed()), None), timeout, xpath)
        element.click()

    def click_at(self, x: float, y: float) -> None:
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        actions = ActionBuilder(self.d)
        actions.pointer_action.move_to_location(int(round(x)), int(round(y)))
        actions.pointer_action.click()
        actions.perform()

    def park_mouse(self) -> None:
        """Move the pointer to an empty corner, so no tooltip or hover highlight is in the shot."""
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        actions = ActionBuilder(self.d)
        actions.pointer_action.move_to_location(SIZE[0] - 5, SIZE[1] - 5)
        actions.perform()

    def dismiss_banner(self) -> None:
        for button in self.xpath("//button[contains(., 'Confirm and Hide')]"):
            if button.is_displayed():
                button.click()

    def shot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.d.save_screenshot(str(path))

    def errors(self) -> list[str]:
        return [e["message"] for e in self.d.get_log("browser") if "Error" in e["message"] and "fonts.g" not in e["message"]]

    # --- OHIF / Cornerstone3D (window.cornerstone is OHIF's own export of @cornerstonejs/core)
    JS_VIEWPORT = "const re = window.cornerstone && window.cornerstone.getRenderingEngines()[0]; const vp = re && re.getViewports().find(v => v.element && v.element.offsetWidth > 0);"

    def viewport_ready(self) -> bool:
        return bool(self.d.execute_script(self.JS_VIEWPORT + """
            if (!vp || !vp.getImageData || !vp.getImageData()) return false;
            const actor = vp.getDefaultActor && vp.getDefaultActor();
            const volume = actor && actor.referencedId && window.cornerstone.cache.getVolume(actor.referencedId);
            return !volume || !volume.loadStatus || !!volume.loadStatus.loaded;"""))

    def wait_rendered(self, timeout: float = 120) -> None:
        self.wait(self.viewport_ready, timeout, "the image in the viewport")
        time.sleep(2.0)  # the last render of a progressive load

    def go_to_slice(self, lps_z: float) -> None:
        """Scroll the viewport to the slice at patient z ``lps_z`` (as an annotator would with the mouse wheel)."""
        self.d.set_script_timeout(60)
        found = self.d.execute_async_script(self.JS_VIEWPORT + """
            const done = arguments[arguments.length - 1], z = arguments[0];
            (async () => {
              const n = vp.getNumberOfSlices ? vp.getNumberOfSlices() : vp.getImageIds().length;
              let best = -1, bestDist = 1e9;
              for (let i = 0; i < n; i++) {
                await window.cornerstone.utilities.jumpToSlice(vp.element, {imageIndex: i});
                const id = vp.getCurrentImageId && vp.getCurrentImageId();
                const plane = id && window.cornerstone.metaData.get('imagePlaneModule', id);
                const at = plane && plane.imagePositionPatient ? plane.imagePositionPatient[2] : vp.getCamera().focalPoint[2];
                const d = Math.abs(at - z);
                if (d < bestDist) { best = i; bestDist = d; }
              }
              await window.cornerstone.utilities.jumpToSlice(vp.element, {imageIndex: best});
              vp.render();
              done([best, bestDist]);
            })().catch(e => done(['error', String(e)]));""", float(lps_z))
        if found[0] == "error" or found[1] > 0.5:
            raise RuntimeError(f"could not scroll to slice z={lps_z}: {found}")
        time.sleep(1.0)

    def world_to_page(self, lps: tuple[float, float, float]) -> tuple[float, float]:
        x, y = self.d.execute_script(self.JS_VIEWPORT + """
            const c = vp.worldToCanvas(arguments[0]); const r = vp.canvas.getBoundingClientRect();
            return [r.left + c[0], r.top + c[1]];""", list(lps))
        return x, y

    def open_viewer(self, study_uid: str) -> None:
        """The study in OHIF's MONAI Label mode, one viewport (the mode opens a 3-viewport MPR)."""
        self.d.get(f"{self.base}/ohif/monai-label?StudyInstanceUIDs={study_uid}")
        self.wait(lambda: self.css("[data-cy=Layout]"), 120, "the OHIF viewer")
        self.wait_rendered()
        self.dismiss_banner()
        self.css("[data-cy=Layout]")[0].click()
        self.click_xpath("//div[text()='Common']/following-sibling::div[1]/div[1]")  # 1 x 1
        time.sleep(2.0)
        self.wait_rendered()

    def connect_panel(self) -> None:
        self.css(".monaiLabelPanel button.actionButton")[0].click()
        self.wait(lambda: "Auto-Segmentation" in self.text(), 60, "the MONAI Label panel to connect")
        self.wait(lambda: "Connected to MONAI Label" not in self.text() and "Connecting" not in self.text(), 30, "the connect notice to go")

    def notification(self, *needles: str, timeout: float = 300) -> str:
        return self.wait(lambda: next((n for n in needles if n in self.text()), None), timeout, f"one of {needles}")


# ----------------------------------------------------------------------------------------------- the shots
def voxel_to_lps(i: float, j: float, k: float, affine: np.ndarray) -> tuple[float, float, float]:
    ras = affine @ np.array([i, j, k, 1.0])
    return float(-ras[0]), float(-ras[1]), float(ras[2])


def shoot(server, orthanc, studies: dict, out: Path, tmp: Path, summary: dict) -> None:
    from monailabel.client.client import MONAILabelClient

    browser = Browser(server.url)
    try:
        # (a) study list, ACDC-011 expanded: its series and the modes it opens in.
        t = time.time()
        browser.d.get(server.url + "/ohif/")
        browser.wait(lambda: "ACDC-013" in browser.text(), 120, "the study list")
        browser.dismiss_banner()
        browser.click_xpath("//td[.//text()[contains(., 'ACDC-011')]][2]")  # the MRN cell: the name cell has a tooltip
        browser.wait(lambda: "MONAI Label" in browser.text() and "short axis" in browser.text(), 30, "the expanded study")
        browser.park_mouse()
        time.sleep(1.5)
        browser.shot(out / "label_study_list.png")
        summary["shots"]["label_study_list.png"] = round(time.time() - t, 1)

        # (b) ACDC-011 in the MONAI Label mode, the panel connected.
        t = time.time()
        name, k = VOLUMES["ACDC-011"]
        affine = nib.load(str(DATA / "imagesTr" / f"{name}.nii.gz")).affine
        browser.open_viewer(studies["ACDC-011"])
        browser.go_to_slice(voxel_to_lps(0, 0, k, affine)[2])
        browser.connect_panel()
        browser.park_mouse()
        time.sleep(1.0)
        browser.shot(out / "label_panel.png")
        summary["shots"]["label_panel.png"] = round(time.time() - t, 1)

        # (c) vessa_student from the panel's Auto-Segmentation tab (vessa_student is the tab's first model).
        t = time.time()
        browser.d.get_log("browser")  # drop what came before
        browser.css(".monaiLabelPanel button[title='Run Segmentation']")[0].click()
        outcome = browser.notification("Running Segmentation - Successful", "Failed to Run Segmentation", "Something went wrong")
        time.sleep(3.0)
        crashed = "Something went wrong" in browser.text()
        errors = [e for e in browser.errors() if "NRRD" in e or "Error Boundary" in e]
        panel_ok = outcome.startswith("Running Segmentation - Successful") and not crashed
        summary["panel_auto_segmentation"] = {"ok": panel_ok, "notification": outcome, "page_crashed": crashed, "console": [e[:300] for e in errors]}
        log(f"panel Run vessa_student: {summary['panel_auto_segmentation']}")
        if panel_ok:
            browser.park_mouse()
            browser.shot(out / "label_auto_seg.png")
            summary["auto_seg_route"] = "OHIF panel, Auto-Segmentation, Run"
        else:
            # The same inference through the REST API, saved as final: MONAI Label then writes it to the PACS as
            # DICOM SEG, which OHIF opens over the MR (hydrates it) like any other segmentation.
            client = MONAILabelClient(server.url, tmpdir=str(tmp / "client"))
            series = series_of(orthanc, studies["ACDC-011"])
            label_path, result = client.infer("vessa_student", series, {})
            names = client.info()["models"]["vessa_student"]["labels"]
            present = sorted(v for v in np.unique(np.asarray(nib.load(label_path).dataobj)) if v)
            by_value = {v: n for n, v in names.items()}
            label_info = [{"name": by_value[int(v)], "color": COLORS.get(by_value[int(v)], (255, 0, 0)), "model_name": "vessa_student"} for v in present]
            saved = client.save_label(series, label_path, tag="final", params={"label_info": label_info})
            summary["rest_save_label"] = {k: v for k, v in saved.items() if k not in ("image", "label")}
            summary["auto_seg_route"] = "REST infer vessa_student + save_label final -> DICOM SEG in Orthanc, opened in OHIF"
            browser.open_viewer(studies["ACDC-011"])
            from selenium.webdriver import ActionChains

            thumb = browser.wait(lambda: next(iter(browser.xpath("//*[starts-with(@data-cy,'study-browser-thumbnail')][.//*[text()='vessa_student']]")), None), 60, "the SEG thumbnail")
            ActionChains(browser.d).double_click(thumb).perform()
            browser.click_xpath("//button[normalize-space()='Yes']", timeout=60)  # "Do you want to open this Segmentation?"
            browser.wait(lambda: not browser.xpath("//button[normalize-space()='Yes']"), 60, "the SEG to load")
            browser.wait_rendered()
            browser.go_to_slice(voxel_to_lps(0, 0, k, affine)[2])
            browser.park_mouse()
            time.sleep(1.5)
            browser.shot(out / "label_auto_seg.png")
        summary["shots"]["label_auto_seg.png"] = round(time.time() - t, 1)

        # (d) active learning: Next Sample with vessa_disagreement (the panel starts on 'random').
        t = time.time()
        browser.open_viewer(studies["ACDC-013"])
        browser.connect_panel()
        browser.click_xpath("//label[text()='Active Learning']")
        from selenium.webdriver.support.ui import Select

        select = browser.wait(lambda: next((e for e in browser.css(".monaiLabelPanel select.actionInput") if e.is_displayed()), None), 30, "the strategy list")
        Select(select).select_by_value("vessa_disagreement")
        browser.click_xpath("//button[text()='Next Sample']")
        browser.notification("Active Learning - Next Sample", "Failed to Fetch Next Sample", timeout=300)
        time.sleep(1.5)
        browser.park_mouse()
        browser.shot(out / "label_active_learning.png")
        summary["shots"]["label_active_learning.png"] = round(time.time() - t, 1)
        requests = [line for line in Path(server.log_path).read_text(errors="replace").splitlines() if "Active Learning Request" in line]
        summary["next_sample"] = {"ok": "Active Learning - Next Sample" in browser.text(), "strategy_selected_in_panel": "vessa_disagreement",
                                  "server_received": requests[-1].split("Active Learning Request:")[-1].strip() if requests else None}
        log(f"panel Next Sample: {summary['next_sample']}")

        # (e) Point Prompts on ACDC-013: vessa_interactive, label "left ventricle", foreground clicks on the LV.
        t = time.time()
        name, k = VOLUMES["ACDC-013"]
        image = nib.load(str(DATA / "imagesTr" / f"{name}.nii.gz"))
        truth = np.asarray(nib.load(str(DATA / "labelsTr" / f"{name}.nii.gz")).dataobj)[..., k] == 3
        ii, jj = np.nonzero(truth)
        centre = (ii.mean(), jj.mean())
        spots = [centre, (centre[0] + 0.35 * (ii.max() - centre[0]), centre[1] + 0.35 * (jj.max() - centre[1]))]
        spots = [s for s in spots if truth[int(round(s[0])), int(round(s[1]))]] or [centre]
        browser.open_viewer(studies["ACDC-013"])  # a fresh page: no dialog left over
        browser.go_to_slice(voxel_to_lps(0, 0, k, image.affine)[2])
        browser.connect_panel()
        browser.click_xpath("//label[text()='Point Prompts']")
        browser.click_xpath("//tr[contains(@class,'clickable-row')][td[text()='left ventricle']]")
        time.sleep(1.0)
        for i, j in spots:
            browser.click_at(*browser.world_to_page(voxel_to_lps(i, j, k, image.affine)))
            time.sleep(0.7)
        browser.park_mouse()
        time.sleep(1.0)
        browser.shot(out / "label_point_prompts.png")
        browser.d.get_log("browser")
        browser.css(".monaiLabelPanel button[title='Run PointPrompts']")[0].click()
        outcome = browser.notification("Inference for Point Prompts - Successful", "Failed to Run Inference for Point Prompts", "Something went wrong")
        time.sleep(3.0)
        crashed = "Something went wrong" in browser.text()
        ok = outcome.endswith("Successful") and not crashed
        summary["panel_point_prompts"] = {"ok": ok, "notification": outcome, "page_crashed": crashed, "clicks_ijk": [[round(i), round(j), k] for i, j in spots]}
        log(f"panel Run vessa_interactive: {summary['panel_point_prompts']}")
        if ok:
            browser.park_mouse()
            browser.shot(out / "label_point_prompts_result.png")
        summary["shots"]["label_point_prompts.png"] = round(time.time() - t, 1)
    finally:
        browser.quit()


def server_answer_for_ohif_clicks(server, orthanc, studies: dict, clicks: list) -> dict:
    """What the server says to the request OHIF's Point Prompts sends for a deepgrow model (no 'label')."""
    series = series_of(orthanc, studies["ACDC-013"])
    body = json.dumps({"foreground": clicks, "background": [], "result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False, "restore_label_idx": False}).encode()
    request = urllib.request.Request(f"{server.url}/infer/vessa_interactive?image={series}&output=image", data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as r:
            return {"status": r.status, "content_type": r.headers.get("content-type"), "bytes": len(r.read())}
    except urllib.error.HTTPError as err:
        return {"status": err.code, "detail": err.read().decode(errors="replace")[:400]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "docs" / "images"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (PACS storage, server log)")
    parser.add_argument("--serve-only", action="store_true", help="start the PACS and the server, print the URLs, wait")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (servers, temp folder) on SIGTERM too
    start = time.time()
    out = Path(args.out).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="vessa_ohif_"))
    summary: dict = {"shots": {}}
    try:
        with contextlib.ExitStack() as stack:
            orthanc, server, studies = start_servers(tmp, stack)
            summary["servers_s"] = round(time.time() - start, 1)
            if args.serve_only:
                (tmp / "urls.json").write_text(json.dumps({"orthanc": orthanc.url, "label": server.url, "studies": studies}))
                log(f"serving; URLs in {tmp / 'urls.json'}; Ctrl-C stops")
                while True:
                    time.sleep(3600)
            shoot(server, orthanc, studies, out, tmp, summary)
            if not summary.get("panel_point_prompts", {}).get("ok", True):
                summary["server_answer_to_ohif_point_prompts"] = server_answer_for_ohif_clicks(server, orthanc, studies, summary["panel_point_prompts"]["clicks_ijk"])
    except KeyboardInterrupt:
        pass
    finally:
        if args.keep or args.serve_only:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    summary["total_s"] = round(time.time() - start, 1)
    if not args.serve_only:
        print(json.dumps(summary, indent=2))
    log(f"done in {summary['total_s']:.0f} s")


if __name__ == "__main__":
    main()
