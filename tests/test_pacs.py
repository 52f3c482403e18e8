"""The test PACS (tests/pacs.py): Orthanc + DICOMweb seen through MONAI Label's own DICOMweb datastore."""

import os
import shutil
import sys

import numpy as np
import pytest

from pacs import OrthancServer, dicom_rescale, ensure_orthanc, upload_series, write_dicom_series

LABEL_INFO = [{"name": "cavity"}, {"name": "wall"}, {"name": "crescent"}]


@pytest.fixture(scope="module")
def sample_case(tmp_path_factory):
    import nibabel as nib

    from vessa.data.sample_data import generate_sample_dataset

    root = tmp_path_factory.mktemp("sample3d")
    generate_sample_dataset(root, kind="3d", num_train=1, num_val=1, num_test=1)
    img = nib.load(str(root / "imagesTr" / "case_000.nii.gz"))
    lab = nib.load(str(root / "labelsTr" / "case_000.nii.gz"))
    return {"volume": np.asarray(img.dataobj), "affine": img.affine, "label": np.asarray(lab.dataobj),
            "label_path": root / "labelsTr" / "case_000.nii.gz"}


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, sample_case):
    reason = ensure_orthanc()
    if reason:
        pytest.skip(f"no test PACS: {reason}")
    tmp = tmp_path_factory.mktemp("pacs")
    case = sample_case
    files = write_dicom_series(case["volume"], tmp / "dcm", case["affine"], patient_id="P001", modality="MR")
    with OrthancServer(tmp / "orthanc") as server:
        study_uid = upload_series(server, files)
        yield {"server": server, "study_uid": study_uid, "files": files}


def _datastore(pacs, cache):
    from dicomweb_client.api import DICOMwebClient
    from monailabel.datastore.dicom import DICOMWebDatastore

    client = DICOMwebClient(url=pacs["server"].dicomweb_root)
    # MONAI Label's default search filter (MONAI_LABEL_DICOMWEB_SEARCH_FILTER) is {"Modality": "CT"}.
    return DICOMWebDatastore(client, search_filter={"Modality": "MR"}, cache_path=str(cache))


def test_orthanc_stores_series(pacs, sample_case):
    series = [s for s in pacs["server"].get_json("/series?expand") if s["MainDicomTags"].get("Modality") != "SEG"]
    assert len(series) == 1
    tags = series[0]["MainDicomTags"]
    assert tags["Modality"] == "MR" and tags["SeriesDescription"] == "VESSA test series"
    assert len(series[0]["Instances"]) == sample_case["volume"].shape[2]


def test_monailabel_datastore_lists_and_converts(pacs, sample_case, tmp_path):
    import nibabel as nib

    ds = _datastore(pacs, tmp_path / "cache")
    images = ds.list_images()
    assert len(images) == 1
    uri = ds.get_image_uri(images[0])
    out = nib.load(uri)
    vol = sample_case["volume"]
    assert out.shape == vol.shape
    slope, _ = dicom_rescale(vol)
    np.testing.assert_allclose(out.get_fdata(), vol, rtol=0, atol=slope / 2 + 1e-6)
    np.testing.assert_allclose(out.affine, sample_case["affine"], atol=1e-4)
    assert ds.get_image_info(images[0])["StudyInstanceUID"] == pacs["study_uid"]


def test_save_label_as_dicom_seg(pacs, sample_case, tmp_path, monkeypatch):
    """save_label(..., "final") converts the label to DICOM SEG (dcmqi's itkimage2segimage) and STOWs it."""
    import SimpleITK as sitk

    # pip's dcmqi puts itkimage2segimage next to the interpreter; that folder is not on PATH without an activated venv.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if shutil.which("itkimage2segimage") is None:
        pytest.skip("itkimage2segimage (pip package dcmqi) is not installed: MONAI Label cannot write DICOM SEG")
    ds = _datastore(pacs, tmp_path / "cache")
    image_id = ds.list_images()[0]
    info = {"label_info": LABEL_INFO}
    ds.save_label(image_id, str(sample_case["label_path"]), "final", info)
    server = pacs["server"]
    segs = [s for s in server.get_json("/series?expand") if s["MainDicomTags"].get("Modality") == "SEG"]
    assert [s["MainDicomTags"]["SeriesInstanceUID"] for s in segs] == [info["SeriesInstanceUID"]]

    # Back from the PACS in a fresh cache: the SEG only spans the labelled slices; resample it onto the image grid.
    ds2 = _datastore(pacs, tmp_path / "cache2")
    image_uri = ds2.get_image_uri(image_id)
    assert ds2.get_labeled_images() == [image_id]
    seg = sitk.ReadImage(ds2.get_label_uri(info["SeriesInstanceUID"], "final", image_id))
    ref = sitk.ReadImage(image_uri)
    seg = sitk.Resample(seg, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, seg.GetPixelID())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg).transpose(2, 1, 0), sample_case["label"])
