# Copyright 2026 regseg_ros maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Read the released checkpoints' key/shape list shipped in test/data."""

from pathlib import Path
from typing import Dict, List, Tuple

KEY_FILE = Path(__file__).resolve().parent / 'data' / 'regseg_state_dict_keys.txt'


def released_keys() -> Dict[Tuple[str, int], List[Tuple[str, Tuple[int, ...], str]]]:
    """
    {(variant, num_classes): [(key, shape, dtype), ...]} in state_dict order.

    The 11-class section lists only the entries that differ from 19 classes; it is completed here.
    """
    sections: Dict[Tuple[str, int], list] = {}
    current = None
    for line in KEY_FILE.read_text().splitlines():
        if line.startswith('#####'):
            name, classes = line[5:].split()
            current = sections.setdefault((name, int(classes.split('=')[1])), [])
        elif line and not line.startswith('#'):
            key, shape, dtype = line.split('\t')
            dims = tuple(int(d) for d in shape.strip('()').split(',') if d.strip())
            current.append((key, dims, dtype.replace('torch.', '')))
    partial = {k: (s, d) for k, s, d in sections[('exp48_decoder26', 11)]}
    sections[('exp48_decoder26', 11)] = [
        (k, *partial.get(k, (s, d))) for k, s, d in sections[('exp48_decoder26', 19)]]
    return sections
