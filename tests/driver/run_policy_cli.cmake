# run_policy_cli.cmake - the command line of examples/run_policy: --help exits 0 on stdout,
# a rejected argument is named in the message (exit 2), large integer params print as
# integers in the JSON summary, and a failing require is named by its text. Run by CTest as
#   cmake -DVXC=vxc -DRUN=run_policy -DSRC=stdlib/streaming.vx -DWORK=dir -P run_policy_cli.cmake
cmake_minimum_required(VERSION 3.25)

include(${CMAKE_CURRENT_LIST_DIR}/../cli_helpers.cmake)

file(MAKE_DIRECTORY ${WORK})
set(ART ${WORK}/streaming.vxp)
run(compile 0 ${SRC} -o ${ART})
set(VXC_COMPILER ${VXC})
set(VXC ${RUN}) # run() runs ${VXC}

run(help 0 --help)
expect(help "${OUT_help}" "^usage: run_policy POLICY\\.vxp")
run(help_after 0 ${ART} --help)
run(no_args 2)
expect(no_args "${ERR_no_args}" "^run_policy: no policy file given\n")
run(bad_steps 2 ${ART} --steps=0)
expect(bad_steps "${ERR_bad_steps}" "^run_policy: expected an integer from 1 to 16777216: '--steps=0'\n")
run(bad_prompt 2 ${ART} --prompt=lots)
expect(bad_prompt "${ERR_bad_prompt}" "^run_policy: expected an integer from 1 to 16777216: '--prompt=lots'\n")
run(bad_override 2 ${ART} window=wide)
expect(bad_override "${ERR_bad_override}" "^run_policy: a param override is NAME=NUMBER: 'window=wide'\n")
run(bad_option 2 ${ART} --frobnicate)
expect(bad_option "${ERR_bad_option}" "^run_policy: unknown option: '--frobnicate'\n")
run(stray 2 ${ART} extra)
expect(stray "${ERR_stray}" "^run_policy: expected NAME=VALUE, --prompt=N, --steps=N or --seed=N: 'extra'\n")
run(option_first 2 --steps=2 ${ART})
expect(option_first "${ERR_option_first}" "^run_policy: the first argument must be the policy file, not an option: '--steps=2'\n")

# 2000000000 printed with %g would be 2e+09
run(large 0 ${ART} window=2000000000 --prompt=64 --steps=1)
expect(large "${OUT_large}" "\"params\":{[^}]*\"window\":2000000000[,}]")

# Overrides are checked at load as the compiler checks literals: VXRT_ERR_PARAM naming the
# param, its value and the rule (a count is a non-negative integer, an extent positive).
run(negative_count 1 ${ART} window=-5 --prompt=64 --steps=1)
expect(negative_count "${ERR_negative_count}" "VXRT_ERR_PARAM: policy streaming: parameter 'window' = -5: a count in tokens must be a non-negative integer")
file(WRITE ${WORK}/ext.vx "policy ext {\n  param R = 4, budget = 64 tokens;\n  const W[c: D, r: R] = gaussian(1);\n  page proj[p, r] = sum[c] k[p, 0, c] * W[c, r];\n  score[p] = max[r] proj[p, r];\n  select top(score, budget);\n}\n")
set(VXC ${VXC_COMPILER})
run(compile_ext 0 ${WORK}/ext.vx -o ${WORK}/ext.vxp)
set(VXC ${RUN})
run(zero_extent 1 ${WORK}/ext.vxp R=0 --prompt=64 --steps=1)
expect(zero_extent "${ERR_zero_extent}" "VXRT_ERR_PARAM: policy ext: parameter 'R' = 0: it is an extent \\(of 'W', axis 2: R\\), which must be a positive integer")
run(extent_ok 0 ${WORK}/ext.vxp R=2 --prompt=64 --steps=1)

# A compound extent that an override makes zero or negative names the axis, its text and the
# params it reads (it used to run with an empty tensor, or say only "cannot evaluate").
file(WRITE ${WORK}/ext2.vx "policy ext2 {\n  param R = 8, budget = 64 tokens;\n  const W[c: D, r: R - 4] = gaussian(1);\n  page proj[p, r] = sum[c] k[p, 0, c] * W[c, r];\n  score[p] = max[r] proj[p, r];\n  select top(score, budget);\n}\n")
set(VXC ${VXC_COMPILER})
run(compile_ext2 0 ${WORK}/ext2.vx -o ${WORK}/ext2.vxp)
set(VXC ${RUN})
run(zero_compound_extent 1 ${WORK}/ext2.vxp R=4 --prompt=64 --steps=1)
expect(zero_compound_extent "${ERR_zero_compound_extent}" "const 'W': axis 2's extent 'R-4' is 0 with R = 4; an extent must be a positive integer")
run(negative_compound_extent 1 ${WORK}/ext2.vxp R=2 --prompt=64 --steps=1)
expect(negative_compound_extent "${ERR_negative_compound_extent}" "axis 2's extent 'R-4' is negative or not computable with R = 2")

# A require that an override breaks is named by its text, as written in the source.
file(WRITE ${WORK}/req.vx "policy req {\n  param K = 8, budget = 64 tokens;\n  require K <= 32;\n  require   K   >= 2 ;\n  page kmax[p, c] = max[t] k[p, t, c];\n  score[p] = sum[c] q[0, c] * kmax[p, c] * K;\n  select top(score, budget);\n}\n")
set(VXC ${VXC_COMPILER})
run(compile_req 0 ${WORK}/req.vx -o ${WORK}/req.vxp)
set(VXC ${RUN})
run(require_text 1 ${WORK}/req.vxp K=40 --prompt=64 --steps=1)
expect(require_text "${ERR_require_text}" "require #1 \\(K <= 32\\) does not hold")
run(require_text_2 1 ${WORK}/req.vxp K=1 --prompt=64 --steps=1)
expect(require_text_2 "${ERR_require_text_2}" "require #2 \\(K >= 2\\) does not hold")

if(failures GREATER 0)
  message(FATAL_ERROR "run_policy_cli: ${failures} check(s) failed")
endif()
message(STATUS "run_policy_cli: all checks passed")
