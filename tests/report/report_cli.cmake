# report_cli.cmake - end-to-end test of `vxc --report`: the text and JSON forms on stdlib
# policies, and the option errors that must exit 2 (usage). Run by CTest as
#   cmake -DVXC=path/to/vxc -DSTDLIB=stdlib -P report_cli.cmake
# The figures themselves are checked by test_report.c; here only the command line.
cmake_minimum_required(VERSION 3.25)

include(${CMAKE_CURRENT_LIST_DIR}/../cli_helpers.cmake)

set(QUEST ${STDLIB}/quest.vx)
file(MAKE_DIRECTORY ${WORK})

# Text: quest at 32K, budget 2048, bf16 KV (the defaults): 2 MiB of f32 envelopes scored,
# 1 MiB attended, 16 MiB dense: 16/3 = 5.33x. Dense FLOPs: 4 G D N = 67108864.
run(text 0 --report ${QUEST} --context 32768 --budget 2048)
expect(text_policy "${OUT_text}" "cost report: policy quest\n")
expect(text_scoring "${OUT_text}" "scoring +2097152 +2.00 MiB +4202496\n")
expect(text_dense "${OUT_text}" "dense +16777216 +16.00 MiB +67108864\n")
expect(text_speedup "${OUT_text}" "predicted speedup over dense: 5.33x, memory bound \\([0-9.]+ FLOPs per byte read; machine balance assumed 295 FLOPs/byte\\); 5.33x by bytes, 7.99x by FLOPs\n")
run(equals 0 --report=text --context=32768 --budget=2048 --kv-dtype=bf16 --G=4 --D=128 --P=16 ${QUEST})
expect(equals "${OUT_equals}" "5.33x by bytes")

# JSON, by --report=json and by --format=json; one object on one line.
run(json 0 --report=json ${QUEST} --context 32768)
expect(json "${OUT_json}" "^{\"policy\":\"quest\",\"context\":32768,.*\"scoring\":{\"bytes\":2097152,\"flops\":4202496,")
expect(json_one_line "${OUT_json}" "^[^\n]*\n$")
run(format_json 0 --report --format=json ${QUEST} --context 32768 --budget 2048)
expect(format_json "${OUT_format_json}" "\"speedup\":{\"bytes\":5.3333")

# A where() selection is an estimate, and says so.
run(magicpig 0 --report ${STDLIB}/magicpig.vx --context 32768 --expected-density 0.02)
expect(magicpig "${OUT_magicpig}" "ESTIMATE")
run(dense 0 --report ${STDLIB}/dense.vx --context 1000)
expect(dense "${OUT_dense}" "1.00x by bytes")

# A selection that reads 'layer': --layers L reports the runs of layers whose figures differ.
run(layers 0 --report ${CMAKE_CURRENT_LIST_DIR}/layered.vx --context 32768 --layers 8)
expect(layers "${OUT_layers}" "per layer \\(8 layers; the figures above are their mean\\):\n  layers 0-1 +32768 tokens")
expect(layers_rest "${OUT_layers}" "  layers 2-7 +1699 tokens .*\\(tokens: ESTIMATE\\)\n")
run(layers_json 0 --report=json ${CMAKE_CURRENT_LIST_DIR}/layered.vx --context 32768 --layers 8)
expect(layers_json "${OUT_layers_json}" "\"per_layer\":\\[{\"first\":0,\"last\":1,")
run(no_layers 0 --report ${CMAKE_CURRENT_LIST_DIR}/layered.vx --context 32768)
expect(no_layers "${OUT_no_layers}" "--layers L reports each layer")
run(bad_layers 2 --report ${QUEST} --context 100 --layers 0)
expect(bad_layers "${ERR_bad_layers}" "'--layers' must be between 1 and 4096")

# Usage errors: exit 2.
run(no_context 2 --report ${QUEST})
expect(no_context "${ERR_no_context}" "--context N")
run(missing_value 2 --report ${QUEST} --context)
expect(missing_value "${ERR_missing_value}" "'--context' needs a value")
run(empty_value 2 --report ${QUEST} --context=)
run(negative 2 --report ${QUEST} --context 32768 --budget -5)
expect(negative "${ERR_negative}" "must not be negative")
run(non_numeric 2 --report ${QUEST} --context 32k)
expect(non_numeric "${ERR_non_numeric}" "expects an integer, not '32k'")
run(zero_context 2 --report ${QUEST} --context 0)
run(zero_D 2 --report ${QUEST} --context 100 --D 0)
run(bad_dtype 2 --report ${QUEST} --context 100 --kv-dtype f8)
run(bad_density 2 --report ${STDLIB}/magicpig.vx --context 100 --expected-density 1.5)
run(bad_density_text 2 --report ${STDLIB}/magicpig.vx --context 100 --expected-density lots)
run(bad_format 2 --report=yaml ${QUEST} --context 100)
run(without_report 2 ${QUEST} --context 100)
expect(without_report "${ERR_without_report}" "need --report")
run(with_emit 2 --report --emit=ir ${QUEST} --context 100)

# A require that fails for the given shapes is an error in the input: exit 1.
run(require 1 --report ${STDLIB}/lserve.vx --context 1000 --P 8)
expect(require "${ERR_require}" "require 1 of the policy does not hold")

# The report says which bound applies, counts per-head selections as the union the group
# reads, lets --budget set the param 'budget' (not every top() count), evaluates budgets that
# read len at --context, and says when the selection depends on the layer.
file(WRITE ${WORK}/halves.vx "policy halves {\n  param budget = 4096 tokens;\n  page kmax[p, c] = max[t] k[p, t, c];\n  page kmin[p, c] = min[t] k[p, t, c];\n  score[p] = max[g] sum[c] q[g, c] * kmax[p, c];\n  let s2[p] = max[g] sum[c] q[g, c] * kmin[p, c];\n  select top(score, budget / 2), top(s2, budget / 2);\n}\n")
run(budget_param 0 --report ${WORK}/halves.vx --context 32768 --budget 2048)
expect(budget_param "${OUT_budget_param}" "top\\(\\) budget 2048 tokens,")
file(WRITE ${WORK}/by_len.vx "policy by_len {\n  page kmax[p, c] = max[t] k[p, t, c];\n  score[p] = max[g] sum[c] q[g, c] * kmax[p, c];\n  select top(score, len / 8 tokens);\n}\n")
run(budget_len 0 --report ${WORK}/by_len.vx --context 32768)
expect(budget_len "${OUT_budget_len}" "top\\(\\) budget 4096 tokens")
file(WRITE ${WORK}/by_layer.vx "policy by_layer {\n  param budget = 1024 tokens;\n  page kmax[p, c] = max[t] k[p, t, c];\n  score[p] = layer < 2 ? 1.0 : max[g] sum[c] q[g, c] * kmax[p, c];\n  select top(score, budget), where(score >= 1.0);\n}\n")
run(layer 0 --report ${WORK}/by_layer.vx --context 32768)
expect(layer "${OUT_layer}" "note: the selection depends on the layer")
run(per_head 0 --report=json ${STDLIB}/magicpig.vx --context 10000 --expected-density 0.02)
expect(per_head "${OUT_per_head}" "\"union_tokens\":")
expect(per_head_note "${OUT_per_head}" "the group reads the union of their selections")
file(WRITE ${WORK}/heavy.vx "policy heavy {\n  param budget = 1024 tokens;\n  const W[c: D, j: 4096] = gaussian(1);\n  page kmax[p, c] = max[t] k[p, t, c];\n  score[p] = max[j] sum[c] kmax[p, c] * W[c, j] * q[0, c];\n  select top(score, budget);\n}\n")
run(compute_bound 0 --report ${WORK}/heavy.vx --context 32768)
expect(compute_bound "${OUT_compute_bound}" "predicted speedup over dense: [0-9.]+x, compute bound")

# --report=json reports its own failures as JSON too: one object per line on stderr, for an
# option error (wherever --report=json stands), a report that cannot be made, and the input's
# diagnostics; --diagnostics=text still wins for the latter.
run(json_usage 2 --context 32k --report=json ${QUEST})
expect(json_usage "${ERR_json_usage}" "^{\"error\":\"usage\",\"message\":\"'--context' expects an integer, not '32k'\"}\n$")
run(json_no_context 2 --report=json ${QUEST})
expect(json_no_context "${ERR_json_no_context}" "^{\"error\":\"usage\",\"message\":\"--report needs the context length: --context N \\(tokens\\)\"}\n$")
run(json_require 1 --report=json ${STDLIB}/lserve.vx --context 1000 --P 8)
expect(json_require "${ERR_json_require}" "^{\"policy\":\"lserve\",\"error\":\"report\",\"message\":\"require 1 of the policy does not hold[^\n]*\"}\n$")
file(WRITE ${WORK}/broken.vx "policy broken {\n  select top(score, budgt);\n}\n")
run(json_diagnostics 1 --report --format=json ${WORK}/broken.vx --context 100)
expect(json_diagnostics "${ERR_json_diagnostics}" "^{\"file\":\"[^\"]*broken\\.vx\",\"line\":2,")
run(json_diagnostics_text 1 --report=json --diagnostics=text ${WORK}/broken.vx --context 100)
expect(json_diagnostics_text "${ERR_json_diagnostics_text}" "broken\\.vx:2:[0-9]+: error: ")

if(failures GREATER 0)
  message(FATAL_ERROR "${failures} failure(s)")
endif()
