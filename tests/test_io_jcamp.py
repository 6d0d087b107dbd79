"""JCAMP-DX parser: every value shape ParaVision writes, with known parsed results."""

import numpy as np
import pytest

from dualmode.io import InputError, parse_jcamp
from dualmode.io.jcamp import Enum, format_jcamp

SAMPLE = """##TITLE=Parameter List
##JCAMPDX=4.24
$$ /opt/PV5.1/data/x/nmr/1/acqp
##$NR=4
##$SW_h=150000
##$BF1=75.4655
##$BYTORDA=little
##$PULPROG=( 32 )
<FLASH.ppg>
##$ACQ_size=( 2 )
256 64
##$PVM_EncSteps1=( 8 )
-4 -3 -2 -1 
0 1 2 3
##$ACQ_grad_matrix=( 2, 3, 3 )
1 0 0 0 1 0 0 0 1 1 0 0 0 0 1 0 1 0
##$PVM_EncGenSteps2=( 6 )
@3*(0) 1 @2*(-2.5)
##$ACQ_ReceiverSelect=( 4 )
Yes Yes No Yes
##$NUC1=( 8 )
<13
C>
##$ACQ_coil_config_file=( 512 )
<Default_Transceiver_1H_1000W_Coil_arr
ay>
##$PVM_SPackArrSliceOrient=( 2, 16 )
<axial> <sagittal>
##$ExcPulse1=(1.11, 5400, 30, Yes, 4, <$ExcPulse1Shape>)
##$TPQQ=( 2 )
(<gauss.exc>, 8.39, 0) (<>, 
30, 0)
##$ACQ_O2_list=( 0 )
##END=
"""


def test_parse_every_value_shape():
    p = parse_jcamp(SAMPLE)
    assert p["NR"] == 4 and p["SW_h"] == 150000 and p["BF1"] == pytest.approx(75.4655)
    assert p["BYTORDA"] == "little" and p["PULPROG"] == "FLASH.ppg"
    np.testing.assert_array_equal(p["ACQ_size"], [256, 64])
    np.testing.assert_array_equal(p["PVM_EncSteps1"], np.arange(-4, 4))
    assert p["ACQ_grad_matrix"].shape == (2, 3, 3)
    np.testing.assert_array_equal(p["ACQ_grad_matrix"][1], [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(p["PVM_EncGenSteps2"], [0, 0, 0, 1, -2.5, -2.5])
    assert p["ACQ_ReceiverSelect"] == ["Yes", "Yes", "No", "Yes"]
    assert p["NUC1"] == "13C"  # string wrapped inside <...> joins without a space
    assert p["ACQ_coil_config_file"] == "Default_Transceiver_1H_1000W_Coil_array"
    assert p["PVM_SPackArrSliceOrient"] == ["axial", "sagittal"]
    assert p["ExcPulse1"] == [1.11, 5400, 30, "Yes", 4, "$ExcPulse1Shape"]
    assert p["TPQQ"] == [["gauss.exc", 8.39, 0], ["", 30, 0]]
    assert p["ACQ_O2_list"].size == 0
    assert "TITLE" in p and "END" not in p


def test_format_then_parse_round_trip():
    params = {"NR": 3, "BF1": 32.1, "BYTORDA": Enum("big"), "NUC1": "13C",
              "ACQ_size": np.array([128, 32]), "M": np.arange(12.0).reshape(3, 4) / 7,
              "ACQ_ReceiverSelect": [Enum("Yes"), Enum("No")], "S": [1, 2.5, "x"],
              "O": ["axial", "coronal"]}
    back = parse_jcamp(format_jcamp(params))
    assert back["NR"] == 3 and back["BF1"] == 32.1 and back["BYTORDA"] == "big" and back["NUC1"] == "13C"
    np.testing.assert_array_equal(back["ACQ_size"], [128, 32])
    np.testing.assert_allclose(back["M"], params["M"], rtol=1e-15)
    assert back["ACQ_ReceiverSelect"] == ["Yes", "No"] and back["S"] == [1, 2.5, "x"]
    assert back["O"] == ["axial", "coronal"]


@pytest.mark.parametrize("text, field", [
    ("no records at all", None),
    ("##$NR\n", "NR"),
    ("##$A=( 4 )\n(1, 2) (3\n", "A"),
    ("##$A=( 1000000, 1000000 )\n0\n", "A"),
    ("##$A=( 3 )\n@999999999*(0)\n", "A"),
])
def test_malformed_jcamp_raises_input_error(text, field):
    with pytest.raises(InputError) as err:
        parse_jcamp(text, "acqp")
    assert err.value.path == "acqp" and err.value.field == field


def test_integers_beyond_int64_become_float():
    p = parse_jcamp("##$A=( 2 )\n1 99999999999999999999999\n")
    assert p["A"].dtype == float and p["A"][1] == 1e23
