#!/usr/bin/env python3
"""Writes the model fuzz target's edge-case seeds from the real one.

The real model and its library were made by the tools on the numtheory
example (KVM), with the build directory's paths cut from the manifest and
the map so that the files do not name the machine they were made on:

    python3 bench/coverage build --examples numtheory --work W
    mkdir tests/fuzz/model_library
    sed 's#"program":"'$PWD/'#"program":"#' W/numtheory/lib/manifest.jsonl \\
        >tests/fuzz/model_library/manifest.jsonl
    sed "s#$PWD/##g" W/numtheory/lib/map.pmap >tests/fuzz/model_library/map.pmap
    cp -r tests/fuzz/model_library L
    build/tools/snapselect/snapselect --lib L --train W/numtheory/train-*.jsonl
    cp L/model.jsonl tests/fuzz/seeds/model/numtheory.model

(the model is retrained because a model names its manifest's hash). Then

    python3 tests/fuzz/seeds/make_model_seeds.py

writes the others beside numtheory.model: each limit at its edge, numbers
in every JSON form, per-user examples, blank lines and a later record type.
Regression inputs of bugs found are added by hand, named after the bug.
"""
import json
import os

d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model")
lines = open(os.path.join(d, "numtheory.model")).read().splitlines()
header = lines[0]
sid = [json.loads(l)["id"] for l in lines if '"type":"segment"' in l]


def write(name, body):
    with open(os.path.join(d, name), "w") as f:
        f.write(body)


write("header-only.model", header + "\n")
write("users-blank-lines-future-records.model",
      "\n" + header + "\n \t\r\n" + lines[1] + "\n" +
      '{"type":"future","x":[1,{"y":null}]}\n' +
      '{"segments":["%s"],"features":["f:isprime","w:isprime","n:2","len:4"],"count":3,'
      '"user":"alice","type":"example"}\n' % sid[0] +
      '{"type":"example","user":"b\\u00ffob","count":1,"features":["f:factor","w:factor"],'
      '"segments":[]}\n')
features = ",".join('"w:%d"' % i for i in range(256))
write("limits.model",
      header.replace('"requests":40', '"requests":9007199254740992') + "\n" +
      '{"type":"segment","id":"%s","order":1e9,"rebuilt":true}\n' % sid[0] +
      '{"type":"segment","id":"%s","order":0,"rebuilt":false}\n' % sid[1] +
      '{"type":"example","user":"%s","count":1000000000,"features":[%s,"%s"],'
      '"segments":["%s","%s","%s"]}\n' % ("u" * 256, features, "x" * 512, sid[0], sid[1], sid[0]))
write("number-forms.model",
      header.replace('"runs":21', '"runs":2.1e1') + "\n" +
      '{"type":"segment","id":"%s","order":-0,"rebuilt":false}\n' % sid[2].upper() +
      '{"type":"example","user":"","count":1e3,"features":["f:x"],"segments":[]}\n' +
      '{"type":"example","user":"","count":10.000,"features":["f:y"],"segments":[]}\n')
write("count-rounded-by-a-double.model",
      header + "\n" +
      '{"type":"example","user":"","count":0.99999999999999999,"features":["f:x"],'
      '"segments":[]}\n')
