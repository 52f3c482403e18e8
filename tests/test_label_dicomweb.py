"""The app against a real PACS: Orthanc with its DICOMweb plugin holds a DICOM series made from a sample volume;
`monailabel start_server --studies <Orthanc's DICOMweb root>` lists it, segments it, and an approved label goes
back to Orthanc as DICOM SEG."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
from monailabel.client.client import MONAILabelClient

from label_server import LabelServer
from pacs import OrthancServer, ensure_orthanc, upload_series, write_dicom_series

LABEL_INFO = [{"name": "cavity"}, {"name": "wall"}, {"name": "crescent"}]


@pytest.fixture(scope="module")
def pacs_app(served_checkpoints, tmp_path_factory):
    reason = ensure_orthanc()
    if reason:
        pytest.skip(f"no test PACS: {reason}")
    from vessa.data.sample_data import generate_sample_dataset

    tmp = tmp_path_factory.mktemp("dicomweb")
    generate_sample_dataset(tmp / "sample", kind="3d", num_train=1, num_val=0, num_test=0)
    image = nib.load(str(tmp / "sample" / "imagesTr" / "case_000.nii.gz"))
    files = write_dicom_series(np.asarray(image.dataobj), tmp / "dcm", image.affine, patient_id="P001", modality="MR")
    ckpt = shutil.copytree(served_checkpoints, tmp / "models")
    with OrthancServer(tmp / "orthanc") as orthanc:
        upload_series(orthanc, files)
        env = {"MONAI_LABEL_DICOMWEB_SEARCH_FILTER": '{"Modality": "MR"}', "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(tmp / "cache"), "MONAI_LABEL_DICOMWEB_CACHE_EXPIRY": "1"}
        server = LabelServer(orthanc.dicomweb_root, {"ckpt_dir": ckpt, "work_dir": tmp / "work", "device": "cpu", "models": "vessa_student,vessa_assistant"}, tmp / "monailabel.log", env=env)
        try:
            yield {"orthanc": orthanc, "server": server, "shape": image.shape, "label_path": tmp / "sample" / "labelsTr" / "case_000.nii.gz"}
        finally:
            server.stop()


def test_series_from_the_pacs_is_listed_segmented_and_saved_back_as_dicom_seg(pacs_app, tmp_path):
    client = MONAILabelClient(pacs_app["server"].url, tmpdir=str(tmp_path))
    sample = client.next_sample("random", {})
    series_uid = sample["id"]
    assert series_uid in client.datastore()["objects"]

    path, result = client.infer("vessa_assistant", series_uid, {})
    label = np.asanyarray(nib.load(path).dataobj)
    assert label.shape == pacs_app["shape"]
    assert set(np.unique(label)) <= {0, 1, 2, 3} and label.any()

    saved = client.save_label(series_uid, str(pacs_app["label_path"]), tag="final", params={"label_info": LABEL_INFO})
    segs = [s for s in pacs_app["orthanc"].get_json("/series?expand") if s["MainDicomTags"].get("Modality") == "SEG"]
    assert len(segs) == 1
    assert saved["bank_exemplars_added"] > 0  # read back from the PACS and put on the image grid for the template bank
