/*
 * bench_escpos -- time to render a 40-line Chinese receipt with a QR code
 * to ESC/POS (the escpos plugin's renderer, linked directly: GB18030
 * conversion, wrapping, Chinese mode, QR commands).  Target: 2 ms.
 *
 * Baseline, in the same run: copying the rendered receipt's bytes once
 * (memcpy of the same size), the floor any renderer pays to produce that
 * output at all; the ratio says how much the rendering adds to it.
 *
 * Usage: bench_escpos [iterations]   prints one line per measure:
 *   render p50_us=.. p99_us=.. bytes=..   /   baseline p50_us=.. p99_us=..
 */
#include <jansson.h>

#include "../../hal/escpos/escpos.h"
#include "bench_common.h"

static json_t *receipt(void)
{
	json_t *b = json_array();
	char line[128];

	json_array_append_new(b, json_pack("{s:s,s:s,s:b,s:b}", "text", "加油卡充值收据 GAS RECEIPT",
	                                   "align", "center", "bold", 1, "double", 1));
	for (int i = 0; i < 38; i++) {
		snprintf(line, sizeof(line), "%02d 天然气 充值 第%d笔  金额 %d.%02d 元", i + 1, i + 1,
		         (i * 37) % 500, (i * 13) % 100);
		json_array_append_new(b, json_pack("{s:s}", "text", line));
	}
	json_array_append_new(b, json_pack("{s:s,s:s}", "text", "谢谢惠顾 欢迎再次光临", "align",
	                                   "right"));
	json_array_append_new(b, json_pack("{s:s,s:i,s:s}", "qr",
	                                   "https://kiosk.example/r/T-20261204-0001?sig=3f9a1c0b7e",
	                                   "size", 6, "align", "center"));
	json_array_append_new(b, json_pack("{s:s}", "cut", "partial"));
	return b;
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? arg_long(argv[1], "iterations", 10) : 2000;
	struct escpos_doc_opts o = {.width = 48, .dots = 576, .qr_ec = ESCPOS_QR_M};
	uint64_t *t = calloc((size_t)iters, sizeof(*t)), *base = calloc((size_t)iters, sizeof(*t));
	json_t *doc = receipt();
	struct escpos_buf out = {0};
	char why[200];
	int lines = 0;
	size_t bytes = 0;

	if (!t || !base)
		die("out of memory");
	for (long i = 0; i < iters; i++) {
		uint64_t t0 = now_ns();
		out.len = 0;
		if (escpos_render(doc, &o, &out, &lines, why, sizeof(why)) < 0)
			die("render: %s", why);
		t[i] = now_ns() - t0;
		bytes = out.len;
	}
	uint8_t *copy = malloc(bytes);
	if (!copy)
		die("out of memory");
	for (long i = 0; i < iters; i++) {
		uint64_t t0 = now_ns();
		memcpy(copy, out.data, bytes);
		__asm__ volatile("" : : "r"(copy) : "memory"); /* keep the copy */
		base[i] = now_ns() - t0;
	}
	qsort(t, (size_t)iters, sizeof(*t), cmp_u64);
	qsort(base, (size_t)iters, sizeof(*base), cmp_u64);
	printf("render p50_us=%.2f p99_us=%.2f bytes=%zu lines=%d\n", pct_us(t, (size_t)iters, 50),
	       pct_us(t, (size_t)iters, 99), bytes, lines);
	printf("baseline p50_us=%.3f p99_us=%.3f\n", pct_us(base, (size_t)iters, 50),
	       pct_us(base, (size_t)iters, 99));
	escpos_buf_free(&out);
	free(copy);
	free(t);
	free(base);
	json_decref(doc);
	return 0;
}
