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

"""The command-line conventions every tool shares: WIDTHxHEIGHT sizes, usage errors exit 2."""

import argparse

import pytest
from regseg_ros.tools.cli import ArgumentParser, format_size, parse_size, positive


def test_sizes_are_width_x_height_as_ros_writes_them():
    assert parse_size('1024x512') == (512, 1024)  # (height, width) for arrays
    assert parse_size('2048X1024') == (1024, 2048)
    assert format_size((512, 1024)) == '1024x512'
    assert format_size(parse_size('640x480')) == '640x480'


@pytest.mark.parametrize('text,message', [
    ('512by1024', "size '512by1024' is not WIDTHxHEIGHT in whole pixels, e.g. 1024x512"),
    ('1024', "size '1024' is not WIDTHxHEIGHT"),
    ('16x16', "size '16x16' must have width and height within [32, 8192] pixels"),
    ('99999x512', 'within [32, 8192] pixels'),
])
def test_bad_sizes_name_the_value_and_the_rule(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        parse_size(text)
    assert message in str(exc.value)
    assert 'decimal' not in str(exc.value)


def test_usage_errors_exit_2_with_the_tool_name(capsys):
    parser = ArgumentParser(prog='tool')
    parser.add_argument('--size', type=parse_size)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(['--size', '512by1024'])
    assert exc.value.code == 2
    assert "tool: error: argument --size: size '512by1024' is not" in capsys.readouterr().err


@pytest.mark.parametrize('kind,text,message', [
    (float, '0', "'0' must be greater than 0"), (float, '-1', "'-1' must be greater than 0"),
    (int, '0', "'0' must be greater than 0"), (int, '1.5', "'1.5' is not a whole number"),
    (float, 'fast', "'fast' is not a number"),
])
def test_positive_numbers(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        positive(kind)(text)
    assert positive(kind)('2') == 2


@pytest.mark.parametrize('args', [['--rate', '0'], ['--rate', '-1'], ['--loops', '0']])
def test_demo_rates_and_loops_must_be_positive(args, capsys):
    from regseg_ros.tools.demo import main
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert 'must be greater than 0' in capsys.readouterr().err
