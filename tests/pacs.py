"""A real PACS for integration tests: Orthanc with its DICOMweb plugin, run as a subprocess on 127.0.0.1.

Usage (tests/ is on sys.path when pytest runs from the repository root)::

    from pacs import OrthancServer, ensure_orthanc, upload_series, write_dicom_series

    reason = ensure_orthanc()          # installs the Debian packages when root; else a skip reason
    if reason:
        pytest.skip(reason)
    with OrthancServer(tmp_path / "orthanc") as server:
        files = write_dicom_series(volume, tmp_path / "dcm", affine, patient_id="P1")
        study_uid = upload_series(server, files)
        client = DICOMwebClient(url=server.dicomweb_root)

Nothing here touches the system Orthanc service: the binary is started with a temporary configuration.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

ORTHANC_PACKAGES = ("orthanc", "orthanc-dicomweb")
_BINARY_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc", "/usr/local/sbin/Orthanc", "/usr/local/bin/Orthanc")
_PLUGIN_PATTERNS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so*",
    "/usr/lib/*/orthanc/plugins/libOrthancDicomWeb.so*",
)
APT_TIMEOUT_S = 900

# SOP classes for the modalities write_dicom_series supports.
_SOP_CLASS = {"MR": "1.2.840.10008.5.1.4.1.1.4", "CT": "1.2.840.10008.5.1.4.1.1.2"}


def orthanc_binary() -> Optional[str]:
    """Path of the Orthanc executable (``$ORTHANC_BINARY`` wins), or None."""
    env = os.environ.get("ORTHANC_BINARY")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("Orthanc")
    if found:
        return found
    return next((c for c in _BINARY_CANDIDATES if os.access(c, os.X_OK)), None)


def dicomweb_plugin() -> Optional[str]:
    """Path of the DICOMweb plugin shared library (``$ORTHANC_DICOMWEB_PLUGIN`` wins), or None."""
    env = os.environ.get("ORTHANC_DICOMWEB_PLUGIN")
    if env:
        return env if os.path.isfile(env) else None
    for pattern in _PLUGIN_PATTERNS:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    return None


def orthanc_available() -> bool:
    """True when both the Orthanc binary and its DICOMweb plugin are installed."""
    return orthanc_binary() is not None and dicomweb_plugin() is not None


def ensure_orthanc() -> Optional[str]:
    """Make Orthanc + DICOMweb available; return None when ready, else the reason why not (for pytest.skip).

    Installs the Debian packages ``orthanc`` and ``orthanc-dicomweb`` with apt-get when they are missing and we
    are root. The packages' service is not started (nor needed): OrthancServer runs its own process.
    """
    if orthanc_available():
        return None
    if shutil.which("apt-get") is None:
        return "Orthanc (+ DICOMweb plugin) is not installed and apt-get is not available to install it"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return (
            "Orthanc (+ DICOMweb plugin) is not installed and installing it needs root: "
            "run `sudo apt-get install -y orthanc orthanc-dicomweb`"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    steps = (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *ORTHANC_PACKAGES],
    )
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"`{' '.join(cmd)}` failed: {e}"
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-800:]
            return f"`{' '.join(cmd)}` exited {proc.returncode}: {tail}"
    if not orthanc_available():
        return f"apt-get installed {ORTHANC_PACKAGES} but Orthanc or libOrthancDicomWeb.so is still not found"
    return None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM the child when the parent dies (a killed test run must not leave Orthanc behind)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class OrthancServer:
    """An Orthanc process with the DICOMweb plugin, storage in ``tmp_dir``, on free ports of 127.0.0.1.

    Use as a context manager (or call start()/stop()). ``url`` is the REST root, ``dicomweb_root`` the
    DICOMweb (QIDO/WADO/STOW-RS) root. The log is ``tmp_dir/orthanc.log``.
    """

    def __init__(self, tmp_dir, start_timeout: float = 60.0, aet: str = "ORTHANC"):
        self.tmp_dir = Path(tmp_dir)
        self.start_timeout = start_timeout
        self.aet = aet
        self.http_port = 0
        self.dicom_port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.tmp_dir / "orthanc.log"
        self.config_path = self.tmp_dir / "orthanc.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_root(self) -> str:
        return f"{self.url}/dicom-web"

    def config(self) -> dict:
        plugin = dicomweb_plugin()
        return {
            "Name": "VESSA-test-PACS",
            "StorageDirectory": str(self.tmp_dir / "storage"),
            "IndexDirectory": str(self.tmp_dir / "index"),
            "StorageCompression": False,
            "Plugins": [plugin] if plugin else [],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "HttpDescribeErrors": True,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "SaveJobs": False,
            "OverwriteInstances": True,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "Host": f"127.0.0.1:{self.http_port}",  # else RetrieveURLs lack the port
                "Ssl": False,
            },
        }

    def log_tail(self, n_chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return "(no log)"

    def get_json(self, path: str, timeout: float = 10.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read().decode())

    def start(self) -> "OrthancServer":
        binary, plugin = orthanc_binary(), dicomweb_plugin()
        if binary is None or plugin is None:
            raise RuntimeError(
                f"Orthanc binary ({binary}) or DICOMweb plugin ({plugin}) not found: call ensure_orthanc()"
            )
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        while self.dicom_port == self.http_port:
            self.dicom_port = free_port()
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [binary, "--no-jobs", str(self.config_path)],
                cwd=self.tmp_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if os.name == "posix" and os.uname().sysname == "Linux" else None,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited with code {self.proc.returncode} while starting; log tail:\n{self.log_tail()}"
                )
            try:
                self.get_json("/system", timeout=2)
                # The DICOMweb plugin registers its routes before /system answers; check it is really there.
                urllib.request.urlopen(self.dicomweb_root + "/studies", timeout=5).close()
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Orthanc did not answer within {self.start_timeout:.0f} s; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> "OrthancServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _ds(value: float) -> str:
    """A number as a DICOM DS string (at most 16 characters)."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def _affine_from(affine_or_spacing) -> np.ndarray:
    a = np.asarray(affine_or_spacing, dtype=float)
    if a.shape == (4, 4):
        return a
    if a.shape == (3,):
        return np.diag([*a, 1.0])
    raise ValueError(f"affine_or_spacing must be a 4x4 RAS affine or 3 spacings, got shape {a.shape}")


def dicom_rescale(volume: np.ndarray) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) write_dicom_series uses for ``volume``: (1, 0) for integer volumes in
    [0, 65535] (stored exactly), else a 16-bit quantization of [min, max]; values round trip within slope / 2."""
    v = np.asarray(volume)
    vmin, vmax = float(v.min()), float(v.max())
    if np.all(np.mod(v, 1) == 0) and vmin >= 0 and vmax <= 65535:
        return 1.0, 0.0
    intercept = float(_ds(vmin))
    slope = float(_ds(max(vmax - intercept, 1e-6) / 65000.0))  # headroom for the intercept's DS rounding
    return slope, intercept


def write_dicom_series(
    volume: np.ndarray,
    out_dir,
    affine_or_spacing=(1.0, 1.0, 1.0),
    patient_id: str = "VESSA-TEST",
    modality: str = "MR",
    study_description: str = "VESSA test study",
    series_description: str = "VESSA test series",
    study_uid: Optional[str] = None,
) -> list[Path]:
    """Write ``volume`` (X, Y, Z), with a NIfTI-style RAS ``affine`` (or spacing), as one single-frame DICOM file
    per axial slice z; return the files in slice order.

    The geometry is converted to DICOM's LPS (IPP/IOP/PixelSpacing/SliceThickness) so that reading the series
    back with ITK/SimpleITK (MONAI Label's dicom_to_nifti) and the NIfTI with nibabel gives the same (X, Y, Z)
    array and affine. Pixel data are uint16; float or negative volumes are stored with a RescaleSlope/Intercept
    (see dicom_rescale). The affine's 3x3 part must have a positive determinant (ITK orders slices along
    row x column cosines); flip the volume first otherwise.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    if modality not in _SOP_CLASS:
        raise ValueError(f"modality must be one of {list(_SOP_CLASS)}, got {modality!r}")
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ValueError(f"volume must be 3D (X, Y, Z), got shape {vol.shape}")
    affine = _affine_from(affine_or_spacing)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    m = lps[:3, :3]
    if np.linalg.det(m) <= 0:
        raise ValueError("affine has a non-positive determinant: ITK would reverse the slice order; flip the volume")
    spacing = np.linalg.norm(m, axis=0)
    cos_i, cos_j, cos_k = (m[:, c] / spacing[c] for c in range(3))
    if not np.allclose(np.cross(cos_i, cos_j), cos_k, atol=1e-4):
        raise ValueError("affine is sheared (slice axis not orthogonal to the image plane): not representable")

    slope, intercept = dicom_rescale(vol)
    stored = np.rint((vol.astype(np.float64) - intercept) / slope)
    if stored.min() < 0 or stored.max() > 65535:
        raise ValueError("volume does not fit uint16 after rescaling")
    stored = stored.astype(np.uint16)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    now = datetime.datetime.now()
    date, tm = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    sop_class = _SOP_CLASS[modality]
    files = []
    for z in range(vol.shape[2]):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        path = out / f"slice_{z:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = tm
        ds.AccessionNumber = ""
        ds.Modality = modality
        ds.Manufacturer = "VESSA"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription, ds.SeriesDescription = study_description, series_description
        ds.PatientName, ds.PatientID = patient_id, patient_id
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.BodyPartExamined = "HEART"
        ds.SliceThickness = _ds(spacing[2])
        if modality == "MR":
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""
            ds.MRAcquisitionType = "2D"
            ds.EchoTime = ds.RepetitionTime = ""
            ds.EchoTrainLength = ""
        else:
            ds.KVP = ""
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, z + 1
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ipp = lps[:3, 3] + m[:, 2] * z
        ds.ImagePositionPatient = [_ds(x) for x in ipp]
        ds.ImageOrientationPatient = [_ds(x) for x in (*cos_i, *cos_j)]
        ds.SliceLocation = _ds(float(np.dot(ipp, cos_k)))
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        # PixelSpacing = [between rows (along j / Y), between columns (along i / X)]
        ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = _ds(intercept), _ds(slope)
        if modality == "MR":
            ds.RescaleType = "US"
        # DICOM rows run along Y, columns along X: the frame is the transposed (X, Y) slice.
        ds.PixelData = np.ascontiguousarray(stored[:, :, z].T).tobytes()
        pydicom.dcmwrite(str(path), ds, write_like_original=False)
        files.append(path)
    return files


def upload_series(server: OrthancServer, files: Sequence, timeout: float = 30.0) -> str:
    """POST each DICOM file to Orthanc's REST ``/instances``; return the StudyInstanceUID of the (first) study."""
    import pydicom

    study_uid = ""
    for f in files:
        data = Path(f).read_bytes()
        req = urllib.request.Request(
            server.url + "/instances", data=data, method="POST", headers={"Content-Type": "application/dicom"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                answer = json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"Orthanc refused {f}: HTTP {e.code} {e.read()[:500]!r}") from e
        if answer.get("Status") not in ("Success", "AlreadyStored"):
            raise RuntimeError(f"Orthanc did not store {f}: {answer}")
        if not study_uid:
            study_uid = str(pydicom.dcmread(str(f), stop_before_pixels=True).StudyInstanceUID)
    return study_uid
