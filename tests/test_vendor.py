"""Part table and vendor-report parsers.

The reports under tests/data/vendor/ are HAND-WRITTEN fixtures (no AMD tool was run here): they follow the
formats of a Vitis HLS 2023.2 csynth.xml, a Vivado HLS 2020.1 csynth.xml (``DSP48E`` tags) and a Vivado 2023.2
``report_utilization`` text (vivado_synth.rpt), as read by hls4ml/report/vivado_report.py. The numbers asserted
below are the numbers written in those files (see tests/data/vendor/README.md).
"""

import os
import shutil

import pytest

from l1forge.firmware import vendor
from l1forge.firmware.parts import part_resources, utilisation

DATA = os.path.join(os.path.dirname(__file__), "data", "vendor")
VITIS = os.path.join(DATA, "vitis_2023")
VIVADO_HLS = os.path.join(DATA, "vivado_hls_2020")
CSYNTH = os.path.join("l1forge_student_prj", "solution1", "syn", "report", "l1forge_student_csynth.xml")


# ---- parts -------------------------------------------------------------------------------------------------
def test_part_resources_by_family():
    vu9p = {"LUT": 1_182_240, "FF": 2_364_480, "DSP": 6_840, "BRAM_18K": 4_320, "URAM": 960}
    assert part_resources("xcvu9p-flga2104-2-e") == vu9p
    assert part_resources("xcvu13p-flga2577-2-e") == part_resources("XCVU13P-fsga2577-1-i")
    assert part_resources("xcku15p-ffva1760-2-e")["DSP"] == 1_968


def test_parts_match_the_csynth_available_resources():
    """The table agrees with the AvailableResources the (hand-written) HLS reports carry for the same parts."""
    for project, part in ((VITIS, "xcvu13p-flga2577-2-e"), (VIVADO_HLS, "xcvu9p-flga2104-2-e")):
        available = vendor.read_csynth(os.path.join(project, CSYNTH))["available"]
        assert available == part_resources(part)


def test_utilisation_percentages():
    used = {"LUT": 17_280, "FF": 0, "DSP": 1_228.8, "BRAM": 537.6}
    percent = utilisation(used, "xcvu13p-flga2577-2-e")
    assert percent == pytest.approx({"LUT": 1.0, "FF": 0.0, "DSP": 10.0, "BRAM": 10.0})
    assert utilisation({"URAM": 0}, "xc7vx690t-ffg1927-2") == {"URAM": 0.0}


def test_unknown_part_and_resource():
    with pytest.raises(ValueError, match=r"unknown FPGA part 'xc7a35t-cpg236-1'") as err:
        part_resources("xc7a35t-cpg236-1")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown resource 'LUTs'"):
        utilisation({"LUTs": 1}, "xcvu9p-flga2104-2-e")


# ---- report parsers ----------------------------------------------------------------------------------------
def test_vitis_csynth_xml():
    report = vendor.read_csynth(os.path.join(VITIS, CSYNTH))
    assert report == {
        "tool": "Vitis HLS 2023.2",
        "part": "xcvu13p-flga2577-2-e",
        "target_clock_ns": 4.17,
        "estimated_clock_ns": 2.977,
        "latency_best_cycles": 9,
        "latency_worst_cycles": 9,
        "ii_min_cycles": 1,
        "ii_max_cycles": 1,
        "resources": {"LUT": 14972, "FF": 2317, "DSP": 6, "BRAM_18K": 0, "URAM": 0},
        "available": {"LUT": 1728000, "FF": 3456000, "DSP": 12288, "BRAM_18K": 5376, "URAM": 1280},
    }


def test_vivado_hls_csynth_xml_dsp48e():
    report = vendor.read_csynth(os.path.join(VIVADO_HLS, CSYNTH))
    assert report["tool"] == "Vivado HLS 2020.1"
    assert (report["latency_worst_cycles"], report["ii_max_cycles"], report["target_clock_ns"]) == (17, 4, 5.0)
    assert report["resources"] == {"LUT": 5689, "FF": 3104, "DSP": 12, "BRAM_18K": 2, "URAM": 0}


def test_vivado_utilisation_rpt():
    # Block RAM Tile 1.5 (36 Kb tiles) is 3 RAMB18; the per-SLR table further down is not read twice.
    used = vendor.read_utilisation(os.path.join(VITIS, "vivado_synth.rpt"))
    assert used == {"LUT": 12411, "FF": 2261, "DSP": 6, "BRAM_18K": 3, "URAM": 0}


def test_parse_reports_logic_synthesis_takes_precedence():
    block = vendor.parse_reports(VITIS)
    rpt, xml = os.path.join(VITIS, "vivado_synth.rpt"), os.path.join(VITIS, CSYNTH)
    assert block["resources"] == {"LUT": 12411, "FF": 2261, "DSP": 6, "BRAM": 3}
    assert (block["latency_cycles"], block["ii_cycles"]) == (9, 1)
    assert block["latency_ns"] == pytest.approx(9 * 4.17)
    assert block["source"] == "vivado"
    assert block["method"] == f"logic synthesis report {rpt}; latency from C synthesis report {xml}"
    assert block["available"] == {"LUT": 1728000, "FF": 3456000, "DSP": 12288, "BRAM": 5376}


def test_parse_reports_c_synthesis_only(tmp_path):
    project = shutil.copytree(VITIS, tmp_path / "p")
    (project / "vivado_synth.rpt").unlink()
    block = vendor.parse_reports(project)
    assert block["resources"] == {"LUT": 14972, "FF": 2317, "DSP": 6, "BRAM": 0}
    assert (block["source"], block["method"]) == ("vitis", f"C synthesis report {project / CSYNTH}")

    block = vendor.parse_reports(VIVADO_HLS)
    assert (block["latency_cycles"], block["latency_ns"], block["ii_cycles"]) == (17, 85.0, 4)
    assert block["resources"] == {"LUT": 5689, "FF": 3104, "DSP": 12, "BRAM": 2}
    assert block["source"] == "vivado"


def _one_line_error(fn, path, match):
    with pytest.raises(vendor.ReportError, match=match) as err:
        fn(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_malformed_and_missing_reports(tmp_path):
    xml = tmp_path / "csynth.xml"
    xml.write_text("<profile><PerformanceEstimates>")
    _one_line_error(vendor.read_csynth, xml, "malformed XML")
    text = open(os.path.join(VITIS, CSYNTH)).read()
    xml.write_text(text.replace("<Worst-caseLatency>9<", "<Worst-caseLatency>undef<"))
    _one_line_error(vendor.read_csynth, xml, "Worst-caseLatency> is 'undef', not a number")
    xml.write_text(text.replace("<LUT>14972</LUT>", ""))
    _one_line_error(vendor.read_csynth, xml, "no <AreaEstimates/Resources/LUT>")
    _one_line_error(vendor.read_csynth, tmp_path / "absent.xml", "cannot read the C synthesis report")

    rpt = tmp_path / "vivado_synth.rpt"
    rpt.write_text("| CLB LUTs | 10 | 0 |\n| CLB Registers | 5 | 0 |\n")
    _one_line_error(vendor.read_utilisation, rpt, "no DSP, BRAM_18K row")
    rpt.write_text("| CLB LUTs | ten | 0 |\n")
    _one_line_error(vendor.read_utilisation, rpt, "'CLB LUTs' row has Used 'ten'")

    _one_line_error(vendor.parse_reports, tmp_path, "cannot read the hls4ml project script")


# ---- vendor tools ------------------------------------------------------------------------------------------
def test_no_vendor_tool_here(tmp_path):
    """No Vivado/Vitis on this machine: a real converted project gets the one-line message, nothing is built."""
    from l1forge.firmware.hls import FirmwareSettings, convert
    from l1forge.quantize.precision import Precision
    from l1forge.students.model import build_student

    hls_model = convert(build_student(16, 5, hidden=(4,)), Precision().input, FirmwareSettings(), tmp_path / "p", compile=False)
    assert vendor.find_vendor_tool() is None
    with pytest.raises(RuntimeError) as err:
        vendor.run_vendor_synthesis(hls_model, logic=True)
    message = str(err.value)
    assert message.startswith("no Vivado/Vitis HLS on PATH: ") and "\n" not in message
    assert "vitis-run and vivado" in message
