/*
 * Stand-in for libsgx_dcap_ql.so.1 with the same C signatures as Intel's
 * sgx_dcap_ql_wrapper.h, so the ctypes marshalling of confnode's dcap backend is tested
 * without SGX. Canned target info (byte i = i ^ 0x5a), quotes shaped like a v3 quote
 * (the REPORT body copied in at offset 48, signature_data_len filling the buffer, a fake
 * QE report whose report_data starts with 32 bytes of 0xEC), and injectable errors.
 */
#include <stdint.h>
#include <string.h>

typedef uint32_t quote3_error_t;

#define STANDIN_QUOTE_SIZE 1500u
#define SGX_QL_ERROR_INVALID_PARAMETER 0xE002u

static quote3_error_t g_errors[3];
static uint8_t g_last_report[432];
static uint32_t g_quote_calls;

/* Test control: fn 0 = target info, 1 = quote size, 2 = quote. */
void standin_set_error(uint32_t fn, quote3_error_t error) {
    if (fn < 3) g_errors[fn] = error;
}

uint32_t standin_last_report(uint8_t *out) {
    memcpy(out, g_last_report, sizeof g_last_report);
    return g_quote_calls;
}

quote3_error_t sgx_qe_get_target_info(uint8_t *p_qe_target_info) {
    if (p_qe_target_info == NULL) return SGX_QL_ERROR_INVALID_PARAMETER;
    memset(p_qe_target_info, 0, 512);
    if (g_errors[0]) return g_errors[0];
    for (uint32_t i = 0; i < 512; i++) p_qe_target_info[i] = (uint8_t)(i ^ 0x5a);
    return 0;
}

quote3_error_t sgx_qe_get_quote_size(uint32_t *p_quote_size) {
    if (p_quote_size == NULL) return SGX_QL_ERROR_INVALID_PARAMETER;
    if (g_errors[1]) return g_errors[1];
    *p_quote_size = STANDIN_QUOTE_SIZE;
    return 0;
}

quote3_error_t sgx_qe_get_quote(const uint8_t *p_app_report, uint32_t quote_size,
                                uint8_t *p_quote) {
    if (p_app_report == NULL || p_quote == NULL) return SGX_QL_ERROR_INVALID_PARAMETER;
    if (g_errors[2]) return g_errors[2];
    if (quote_size < STANDIN_QUOTE_SIZE) return SGX_QL_ERROR_INVALID_PARAMETER;
    memcpy(g_last_report, p_app_report, sizeof g_last_report);
    g_quote_calls++;
    memset(p_quote, 0, quote_size);
    p_quote[0] = 3;  /* version 3 */
    p_quote[2] = 2;  /* ECDSA P-256 */
    memcpy(p_quote + 48, p_app_report, 384);
    uint32_t sig_len = STANDIN_QUOTE_SIZE - 436;
    memcpy(p_quote + 432, &sig_len, 4);
    memset(p_quote + 436 + 64 + 64 + 320, 0xEC, 32);  /* QE report_data[0:32] = ECDSA_ID */
    return 0;
}
