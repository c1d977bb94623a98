/* render.c — grouping and printing what ranks did, for the REPL, :show, :ranks and script
 * mode. The rule everywhere: ranks that did the same thing are shown once, labelled with
 * the compressed ranges of their ranks ("[0-3]"), in rank order, labels padded to one
 * width so that the text lines up. A world of 1 gets no labels, like plain lua. */
#include "runtime/render.h"

#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COLOR_LABEL "\033[36m"
#define COLOR_ERROR "\033[31m"
#define COLOR_OK "\033[32m"
#define COLOR_DIM "\033[2m"
#define COLOR_RESET "\033[0m"

bool render_color_wanted(int fd) {
    return getenv("NO_COLOR") == NULL && isatty(fd);
}

/* Appends printf-style text to buf of `size`, keeping it NUL-terminated and truncating. */
static void append(char *buf, size_t size, size_t *len, const char *text) {
    size_t n = strlen(text);
    if (*len + 1 >= size) return;
    if (n > size - 1 - *len) n = size - 1 - *len;
    memcpy(buf + *len, text, n);
    *len += n;
    buf[*len] = '\0';
}

char *render_ranges(const bool *set, int n, char *buf, size_t size) {
    size_t len = 0;
    if (size == 0) return buf;
    buf[0] = '\0';
    for (int i = 0; i < n;) {
        if (!set[i]) {
            i++;
            continue;
        }
        int j = i;
        while (j + 1 < n && set[j + 1]) j++;
        char part[32];
        if (j == i)
            snprintf(part, sizeof part, "%s%d", len ? "," : "", i);
        else if (j == i + 1) /* two neighbours read better as "0,1" than "0-1" */
            snprintf(part, sizeof part, "%s%d,%d", len ? "," : "", i, j);
        else
            snprintf(part, sizeof part, "%s%d-%d", len ? "," : "", i, j);
        append(buf, size, &len, part);
        i = j + 1;
    }
    return buf;
}

/* Reads a rank number at *p (after spaces); advances *p. Returns -1 when there is none. */
static long read_rank(const char **p) {
    while (**p == ' ') (*p)++;
    if (!isdigit((unsigned char)**p)) return -1;
    char *end;
    long v = strtol(*p, &end, 10);
    *p = end;
    while (**p == ' ') (*p)++;
    return v;
}

ddp_status render_parse_ranges(const char *text, int n, bool *set) {
    const char *p = text;
    while (*p == ' ') p++;
    if (strcmp(p, "all") == 0 || strncmp(p, "all ", 4) == 0) {
        for (int i = 0; i < n; i++) set[i] = true;
        return DDP_OK;
    }
    bool *picked = calloc((size_t)n, sizeof *picked);
    if (!picked) return DDP_FAIL(DDP_ERR_NOMEM, "ranks: out of memory");
    bool any = false;
    ddp_status st = DDP_OK;
    while (*p) {
        const char *start = p;
        long a = read_rank(&p), b = a;
        if (a >= 0 && *p == '-') {
            p++;
            b = read_rank(&p);
        }
        if (a < 0 || b < 0 || (*p != ',' && *p != '\0')) {
            st = DDP_FAIL(DDP_ERR_ARG,
                          "ranks: cannot read '%s': write ranks like 0,2 or 1-3 or all", start);
            break;
        }
        if (a > b) {
            st = DDP_FAIL(DDP_ERR_ARG, "ranks: %ld-%ld is empty: write the smaller rank first", a,
                          b);
            break;
        }
        if (b >= n) {
            st = DDP_FAIL(DDP_ERR_ARG, "ranks: there is no rank %ld: the ranks are 0-%d", b, n - 1);
            break;
        }
        for (long r = a; r <= b; r++) picked[r] = true;
        any = true;
        if (*p == ',') p++;
    }
    if (st == DDP_OK && !any)
        st = DDP_FAIL(DDP_ERR_ARG, "ranks: none given: write ranks like 0,2 or 1-3 or all");
    if (st == DDP_OK) memcpy(set, picked, (size_t)n * sizeof *set);
    free(picked);
    return st;
}

char *render_describe_exit(int exit_status, char *buf, size_t size) {
    if (exit_status == RANK_EXIT_UNKNOWN) {
        snprintf(buf, size, "lost its connection (exit status unknown)");
    } else if (exit_status >= 0) {
        snprintf(buf, size, "exited with status %d", exit_status);
    } else {
        const char *abbrev = sigabbrev_np(-exit_status);
        if (abbrev)
            snprintf(buf, size, "killed by signal %d (SIG%s)", -exit_status, abbrev);
        else
            snprintf(buf, size, "killed by signal %d", -exit_status);
    }
    return buf;
}

/* ---- grouped blocks ------------------------------------------------------------------ */

/* One block to print: a label ("[0-3]") and its lines of text. */
typedef struct {
    char label[128];
    bool is_error; /* shown in the error color */
    const char *text;
    size_t len;
    char *owned; /* text we built (freed after printing), or NULL */
} block;

static bool same_bytes(const char *a, size_t alen, const char *b, size_t blen) {
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool same_str(const char *a, const char *b) {
    return strcmp(a ? a : "", b ? b : "") == 0;
}

void render_write_visible(FILE *out, const char *line, size_t n) {
    /* what a terminal would leave after carriage returns: the text after the last one
     * (a CR at the very end, as in CRLF, is dropped) */
    while (n > 0 && line[n - 1] == '\r') n--;
    for (size_t i = n; i > 0; i--)
        if (line[i - 1] == '\r') {
            line += i;
            n -= i;
            break;
        }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == 0x1b && i + 1 < n && line[i + 1] == '[') { /* keep colour (SGR) only */
            size_t j = i + 2;
            while (j < n && ((line[j] >= '0' && line[j] <= '9') || line[j] == ';')) j++;
            if (j < n && line[j] == 'm') {
                fwrite(line + i, 1, j + 1 - i, out);
                i = j;
                continue;
            }
        }
        if (c == '\t' || (c >= 0x20 && c != 0x7f))
            fputc(c, out);
        else if (c == 0x7f)
            fputs("^?", out);
        else
            fprintf(out, "^%c", c + 64); /* ESC shows as ^[, a bell as ^G */
    }
}

/* Prints one block: the label padded to `width`, then the lines, later lines indented. */
static void print_block(FILE *out, const block *b, int width, const render_style *style) {
    const char *p = b->text, *end = b->text + b->len;
    if (b->len > 0 && end[-1] == '\n') end--; /* one trailing newline ends the last line */
    bool first = true;
    do {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        if (style->labels) {
            if (first && style->color)
                fprintf(out, COLOR_LABEL "%-*s" COLOR_RESET " ", width, b->label);
            else
                fprintf(out, "%-*s ", width, first ? b->label : "");
        }
        if (b->is_error && style->color) fputs(COLOR_ERROR, out);
        render_write_visible(out, p, (size_t)(line_end - p));
        if (b->is_error && style->color) fputs(COLOR_RESET, out);
        fputc('\n', out);
        first = false;
        p = line_end + 1;
    } while (p < end);
}

/* The driver's words for a RANK_DIED result: "rank 2 <how>; its last output:\n<lines>"
 * (see driver.c). Returns the lines after that marker (borrowed, trailing newlines kept),
 * or NULL when the rank printed nothing before it died. */
static const char *death_tail(const rank_result *r) {
    static const char marker[] = "; its last output:\n";
    const char *at = r->error ? strstr(r->error, marker) : NULL;
    if (!at || !at[sizeof marker - 1]) return NULL;
    return at + sizeof marker - 1;
}

/* Whether `tail` (ignoring trailing newlines) is already on screen as the end of this
 * chunk's output `out` (NUL-terminated; script mode streams it, the REPL shows it as
 * the rank's block just above the death). */
static bool tail_already_shown(const char *tail, const char *out) {
    if (!out) return false;
    size_t tn = strlen(tail), on = strlen(out);
    while (tn > 0 && tail[tn - 1] == '\n') tn--;
    while (on > 0 && out[on - 1] == '\n') on--;
    return tn == 0 || (on >= tn && memcmp(out + on - tn, tail, tn) == 0);
}

/* What an interrupted rank shows: the driver's reason when it stopped the rank because
 * another one died ("stopped because rank 1 was killed by signal 9 (SIGKILL)"), else
 * "interrupted" (Ctrl-C; the Lua traceback of an interrupt is noise). Borrowed. */
static const char *interrupt_reason(const rank_result *r) {
    if (r->error && strncmp(r->error, "stopped because ", 16) == 0) return r->error;
    return "interrupted";
}

/* Writes one death: "rank(s) 1,3 died: <how>", or for ranks that were already dead before
 * this chunk "... not running: <how> earlier" (the REPL adds the :restart hint); then each rank's
 * last output lines that are not already on screen, indented. */
static void describe_death(FILE *f, const rank_result *results, const rank_result *r,
                           const bool *set, int n, int count) {
    char ranks[96], how[96];
    render_describe_exit(r->exit_status, how, sizeof how);
    render_ranges(set, n, ranks, sizeof ranks);
    if (r->error && strstr(r->error, " is not running ")) {
        fprintf(f, "%s %s %s not running: %s earlier", count > 1 ? "ranks" : "rank", ranks,
                count > 1 ? "are" : "is", how);
        return;
    }
    fprintf(f, "%s %s died: %s", count > 1 ? "ranks" : "rank", ranks, how);
    if (r->error && strstr(r->error, "the third Ctrl-C killed it")) /* the driver's doing */
        fputs(" (it did not stop at Ctrl-C, and the third Ctrl-C killed it)", f);
    for (int i = 0; i < n; i++) {
        const char *tail = set[i] ? death_tail(&results[i]) : NULL;
        if (!tail || tail_already_shown(tail, results[i].output)) continue;
        if (count > 1)
            fprintf(f, "\nrank %d's last output:", i);
        else
            fputs("; its last output:", f);
        for (const char *p = tail; *p;) {
            const char *nl = strchr(p, '\n');
            size_t len = nl ? (size_t)(nl - p) : strlen(p);
            if (len > 0 || (nl && nl[1])) fprintf(f, "\n  %.*s", (int)len, p);
            p += len + (nl != NULL);
        }
    }
}

/* The text of a non-DONE outcome for the members `set` (owned, malloc'd). */
static char *outcome_text(const rank_result *results, const rank_result *r, const bool *set, int n,
                          const render_style *style) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f) return NULL;
    int count = 0;
    for (int i = 0; i < n; i++) count += set[i];
    switch (r->outcome) {
    case RANK_ERROR:
        fprintf(f, "%s%s", style->labels ? "error: " : "",
                r->error && r->error[0] ? r->error : "(error without a message)");
        break;
    case RANK_DIED:
        describe_death(f, results, r, set, n, count);
        break;
    case RANK_INTERRUPTED:
        fputs(interrupt_reason(r), f);
        break;
    default:
        break;
    }
    fclose(f);
    return text;
}

/* Whether two non-DONE outcomes are shown as one: deaths group by exit status alone (the
 * driver's messages name the rank), interruptions by the reason shown, errors by text. */
static bool same_outcome(const rank_result *a, const rank_result *b) {
    if (a->outcome != b->outcome) return false;
    if (a->outcome == RANK_DIED)
        return a->exit_status == b->exit_status &&
               (strstr(a->error ? a->error : "", " is not running ") != NULL) ==
                   (strstr(b->error ? b->error : "", " is not running ") != NULL);
    if (a->outcome == RANK_INTERRUPTED)
        return strcmp(interrupt_reason(a), interrupt_reason(b)) == 0;
    return same_str(a->error, b->error);
}

/* Groups the target ranks into blocks: outputs first, then outcomes. *count blocks. */
static block *make_blocks(const rank_result *results, int n, const render_style *style,
                          int *count) {
    block *blocks = calloc((size_t)(2 * n + 1), sizeof *blocks);
    bool *done = calloc((size_t)n, sizeof *done), *set = calloc((size_t)n, sizeof *set);
    int nb = 0;
    if (!blocks || !done || !set) goto out;
    for (int i = 0; i < n; i++) { /* pass 1: identical output */
        const rank_result *r = &results[i];
        if (r->outcome == RANK_SKIPPED || r->output_len == 0 || done[i]) continue;
        memset(set, 0, (size_t)n * sizeof *set);
        for (int j = i; j < n; j++) {
            const rank_result *s = &results[j];
            if (s->outcome != RANK_SKIPPED && !done[j] &&
                same_bytes(r->output, r->output_len, s->output, s->output_len))
                set[j] = done[j] = true;
        }
        block *b = &blocks[nb++];
        char ranks[120];
        snprintf(b->label, sizeof b->label, "[%s]", render_ranges(set, n, ranks, sizeof ranks));
        b->text = r->output;
        b->len = r->output_len;
    }
    memset(done, 0, (size_t)n * sizeof *done);
    for (int i = 0; i < n; i++) { /* pass 2: what did not end normally, once per kind */
        const rank_result *r = &results[i];
        if (r->outcome == RANK_SKIPPED || r->outcome == RANK_DONE || done[i]) continue;
        memset(set, 0, (size_t)n * sizeof *set);
        for (int j = i; j < n; j++) {
            const rank_result *s = &results[j];
            if (!done[j] && same_outcome(r, s)) set[j] = done[j] = true;
        }
        block *b = &blocks[nb];
        char ranks[120];
        snprintf(b->label, sizeof b->label, "[%s]", render_ranges(set, n, ranks, sizeof ranks));
        b->owned = outcome_text(results, r, set, n, style);
        if (!b->owned) continue;
        b->text = b->owned;
        b->len = strlen(b->owned);
        b->is_error = r->outcome != RANK_INTERRUPTED;
        nb++;
    }
out:
    free(done);
    free(set);
    *count = nb;
    return blocks;
}

/* Prints and frees blocks made by make_blocks. */
static void print_blocks(FILE *out, block *blocks, int nb, const render_style *style) {
    int width = 0;
    for (int i = 0; i < nb; i++) {
        int w = (int)strlen(blocks[i].label);
        if (w > width) width = w;
    }
    for (int i = 0; i < nb; i++) {
        print_block(out, &blocks[i], width, style);
        free(blocks[i].owned);
    }
    free(blocks);
}

void render_results(FILE *out, const rank_result *results, int n, const render_style *style) {
    int nb = 0;
    block *blocks = make_blocks(results, n, style, &nb);
    if (blocks) print_blocks(out, blocks, nb, style);
    fflush(out);
}

/* ---- :show ---------------------------------------------------------------------------- */

/* Columns a UTF-8 string takes on screen (continuation bytes take none). */
static int display_width(const char *s, size_t len) {
    int w = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) w += s[i] == '\t' ? 8 : 1;
    return w;
}

/* The text one rank contributes to :show (borrowed, or in *owned). */
static const char *show_text(const rank_result *r, size_t *len, char **owned) {
    *owned = NULL;
    if (r->outcome == RANK_DONE) {
        *len = r->output_len;
        if (*len > 0 && r->output[*len - 1] == '\n') (*len)--;
        return r->output ? r->output : "";
    }
    char buf[64];
    if (r->outcome == RANK_ERROR) { /* "error: " as render_results says it: not a value */
        const char *e = r->error ? r->error : "";
        const char *nl = strchr(e, '\n');
        int n = nl ? (int)(nl - e) : (int)strlen(e); /* first line only: columns stay narrow */
        if (asprintf(owned, "error: %.*s", n, e) < 0) *owned = NULL;
        *len = *owned ? strlen(*owned) : 0;
        return *owned ? *owned : "";
    }
    if (r->outcome == RANK_DIED)
        *owned = strdup(render_describe_exit(r->exit_status, buf, sizeof buf));
    else
        *owned = strdup(interrupt_reason(r));
    *len = *owned ? strlen(*owned) : 0;
    return *owned ? *owned : "";
}

/* Whether two ranks showed the same thing. */
static bool same_result(const rank_result *a, const rank_result *b) {
    return a->outcome == b->outcome &&
           same_bytes(a->output, a->output_len, b->output, b->output_len) &&
           (a->outcome == RANK_DONE || same_outcome(a, b));
}

/* Prints the line saying which ranks agree. */
static void show_agreement(FILE *out, const rank_result *results, int n,
                           const render_style *style) {
    int *group = calloc((size_t)n, sizeof *group);
    bool *set = calloc((size_t)n, sizeof *set);
    if (!group || !set) goto out;
    /* only values are compared: a rank that failed or died has none to agree on */
    int ngroups = 0, values = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        if (results[i].outcome == RANK_SKIPPED) continue;
        if (results[i].outcome != RANK_DONE) {
            failed++;
            continue;
        }
        values++;
        group[i] = 0;
        for (int j = 0; j < i && !group[i]; j++)
            if (results[j].outcome == RANK_DONE && same_result(&results[i], &results[j]))
                group[i] = group[j];
        if (!group[i]) group[i] = ++ngroups;
    }
    if (values < 2) goto out;
    if (ngroups == 1 && failed == 0) {
        fprintf(out, "%s✓ all equal%s\n", style->color ? COLOR_OK : "",
                style->color ? COLOR_RESET : "");
        goto out;
    }
    if (ngroups == 1) { /* equal, but not everywhere: say where */
        char ranks[120];
        for (int i = 0; i < n; i++) set[i] = results[i].outcome == RANK_DONE;
        fprintf(out, "%s✓ equal on the ranks that gave a value [%s]%s\n",
                style->color ? COLOR_OK : "", render_ranges(set, n, ranks, sizeof ranks),
                style->color ? COLOR_RESET : "");
        goto out;
    }
    if (ngroups == values && failed == 0) {
        fprintf(out, "%s≠ every rank differs%s\n", style->color ? COLOR_ERROR : "",
                style->color ? COLOR_RESET : "");
        goto out;
    }
    fprintf(out, "%s≠ %d different values; equal within", style->color ? COLOR_ERROR : "", ngroups);
    for (int g = 1; g <= ngroups; g++) {
        char ranks[120];
        for (int i = 0; i < n; i++) set[i] = results[i].outcome == RANK_DONE && group[i] == g;
        fprintf(out, " [%s]", render_ranges(set, n, ranks, sizeof ranks));
    }
    fprintf(out, "%s\n", style->color ? COLOR_RESET : "");
out:
    free(group);
    free(set);
}

void render_show(FILE *out, const rank_result *results, int n, int width,
                 const render_style *style) {
    const char **texts = calloc((size_t)n, sizeof *texts);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    char **owned = calloc((size_t)n, sizeof *owned);
    int *colw = calloc((size_t)n, sizeof *colw);
    if (!texts || !lens || !owned || !colw) goto out;
    int total = 0, rows = 0, targets = 0;
    for (int i = 0; i < n; i++) {
        if (results[i].outcome == RANK_SKIPPED) continue;
        targets++;
        texts[i] = show_text(&results[i], &lens[i], &owned[i]);
        char head[16];
        colw[i] = snprintf(head, sizeof head, "[%d]", i);
        int nrows = 0;
        const char *p = texts[i], *end = texts[i] + lens[i];
        while (p <= end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            int w = display_width(p, (size_t)(le - p));
            if (w > colw[i]) colw[i] = w;
            nrows++;
            p = le + 1;
        }
        if (nrows > rows) rows = nrows;
        total += colw[i] + 3;
    }
    if (targets <= 1 || total > width || !style->labels) {
        render_results(out, results, n, style); /* does not fit side by side */
        show_agreement(out, results, n, style);
        goto out;
    }
    int last = 0;
    for (int i = 0; i < n; i++)
        if (results[i].outcome != RANK_SKIPPED) last = i;
    for (int i = 0; i < n; i++) { /* header row */
        if (results[i].outcome == RANK_SKIPPED) continue;
        char head[16];
        int hw = snprintf(head, sizeof head, "[%d]", i);
        fprintf(out, "%s%s%s", style->color ? COLOR_LABEL : "", head,
                style->color ? COLOR_RESET : "");
        if (i < last) fprintf(out, "%*s", colw[i] - hw + 3, "");
    }
    fputc('\n', out);
    const char **cursor = calloc((size_t)n, sizeof *cursor);
    if (!cursor) goto out;
    for (int i = 0; i < n; i++) cursor[i] = texts[i];
    for (int row = 0; row < rows; row++) {
        int pending = 0; /* padding owed, written only when text follows (no trailing blanks) */
        for (int i = 0; i < n; i++) {
            if (results[i].outcome == RANK_SKIPPED) continue;
            const char *end = texts[i] + lens[i];
            int w = 0;
            bool err = results[i].outcome != RANK_DONE;
            if (cursor[i] && cursor[i] <= end) {
                const char *nl = memchr(cursor[i], '\n', (size_t)(end - cursor[i]));
                const char *le = nl ? nl : end;
                fprintf(out, "%*s", pending, "");
                pending = 0;
                if (err && style->color) fputs(COLOR_ERROR, out);
                render_write_visible(out, cursor[i], (size_t)(le - cursor[i]));
                if (err && style->color) fputs(COLOR_RESET, out);
                w = display_width(cursor[i], (size_t)(le - cursor[i]));
                cursor[i] = nl ? nl + 1 : NULL;
            }
            pending += colw[i] - w + 3;
        }
        fputc('\n', out);
    }
    free(cursor);
    show_agreement(out, results, n, style);
out:
    if (owned)
        for (int i = 0; i < n; i++) free(owned[i]);
    free(texts);
    free(lens);
    free(owned);
    free(colw);
    fflush(out);
}

/* ---- :ranks ---------------------------------------------------------------------------- */

/* "12.3 MiB" for a byte count; "-" when unknown. */
static char *human_bytes(int64_t bytes, char *buf, size_t size) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    if (bytes < 0) {
        snprintf(buf, size, "-");
        return buf;
    }
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, size, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

void render_activity(FILE *out, const rank_info *info, int n, const render_style *style) {
    bool *done = calloc((size_t)n, sizeof *done), *set = calloc((size_t)n, sizeof *set);
    if (!done || !set) {
        free(done);
        free(set);
        return;
    }
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (done[i] || !info[i].state[0]) continue;
        memset(set, 0, (size_t)n * sizeof *set);
        for (int j = i; j < n; j++)
            if (!done[j] && strcmp(info[j].state, info[i].state) == 0) set[j] = done[j] = true;
        char ranks[120];
        render_ranges(set, n, ranks, sizeof ranks);
        if (!first) fputs(" · ", out);
        first = false;
        if (style->color)
            fprintf(out, COLOR_LABEL "[%s]" COLOR_RESET " ", ranks);
        else
            fprintf(out, "[%s] ", ranks);
        /* "in all_reduce #3 ..." from the rank reads better as what it waits for */
        fprintf(out, "%s%s", strncmp(info[i].state, "in ", 3) == 0 ? "waiting " : "",
                info[i].state);
    }
    free(done);
    free(set);
}

/* "12.0 MiB / 20.0 MiB": a rank's GPU memory allocated and reserved; "-" without. */
static char *gpu_memory(const rank_info *in, char *buf, size_t size) {
    char a[32], r[32];
    if (!in->has_gpu) return human_bytes(-1, buf, size);
    snprintf(buf, size, "%s / %s", human_bytes(in->gpu_allocated, a, sizeof a),
             human_bytes(in->gpu_reserved, r, sizeof r));
    return buf;
}

void render_ranks_table(FILE *out, const rank_info *info, int n, const render_style *style) {
    int wr = 4, wh = 4, wp = 3, wd = 6, ws = 5, wm = 6;
    bool gpus = false; /* the GPU column only where some rank used a GPU */
    char tmp[64];
    for (int i = 0; i < n; i++) {
        int w;
        if ((w = snprintf(tmp, sizeof tmp, "%d", info[i].rank)) > wr) wr = w;
        if ((w = (int)strlen(info[i].host)) > wh) wh = w;
        if ((w = snprintf(tmp, sizeof tmp, "%d", info[i].pid)) > wp) wp = w;
        if ((w = (int)strlen(info[i].device)) > wd) wd = w;
        if ((w = (int)strlen(info[i].state)) > ws) ws = w;
        if ((w = (int)strlen(human_bytes(info[i].rss_bytes, tmp, sizeof tmp))) > wm) wm = w;
        gpus = gpus || info[i].has_gpu;
    }
    fprintf(out, "%s%-*s  %-*s  %*s  %-*s  %-*s  %-*s%s%s\n", style->color ? COLOR_DIM : "", wr,
            "rank", wh, "host", wp, "pid", wd, "device", ws, "state", gpus ? wm : 0, "memory",
            gpus ? "  gpu memory (allocated / reserved)" : "", style->color ? COLOR_RESET : "");
    for (int i = 0; i < n; i++) {
        bool dead = strncmp(info[i].state, "dead", 4) == 0;
        char g[80];
        fprintf(out, "%-*d  %-*s  %*d  %-*s  %s%-*s%s  %-*s%s%s\n", wr, info[i].rank, wh,
                info[i].host, wp, info[i].pid, wd, info[i].device,
                dead && style->color ? COLOR_ERROR : "", ws, info[i].state,
                dead && style->color ? COLOR_RESET : "", gpus ? wm : 0,
                human_bytes(dead ? -1 : info[i].rss_bytes, tmp, sizeof tmp), gpus ? "  " : "",
                gpus ? gpu_memory(&info[i], g, sizeof g) : "");
    }
    fflush(out);
}

/* ---- script mode's line labels ---------------------------------------------------------- */

/* The longest partial line held back for its newline. */
#define LABELLER_MAX_LINE 4096

struct line_labeller {
    int nranks;
    render_style style;
    FILE *out;
    int width;      /* of the widest label, "[15]" */
    char **partial; /* per rank: bytes of a line not yet ended (malloc'd or NULL) */
    size_t *len;
};

line_labeller *labeller_new(int nranks, const render_style *style, FILE *out) {
    line_labeller *lab = calloc(1, sizeof *lab);
    if (!lab) return NULL;
    lab->nranks = nranks;
    lab->style = *style;
    lab->out = out;
    char tmp[32];
    lab->width = snprintf(tmp, sizeof tmp, "[%d]", nranks > 0 ? nranks - 1 : 0);
    lab->partial = calloc((size_t)(nranks > 0 ? nranks : 1), sizeof *lab->partial);
    lab->len = calloc((size_t)(nranks > 0 ? nranks : 1), sizeof *lab->len);
    if (!lab->partial || !lab->len) {
        labeller_free(lab);
        return NULL;
    }
    return lab;
}

/* Writes one whole line of `rank`: its label, the buffered start, then `rest`. */
static void labeller_line(line_labeller *lab, int rank, const char *rest, size_t n) {
    if (lab->style.labels) {
        char label[32];
        snprintf(label, sizeof label, "[%d]", rank);
        fprintf(lab->out, "%s%-*s%s ", lab->style.color ? COLOR_LABEL : "", lab->width, label,
                lab->style.color ? COLOR_RESET : "");
    }
    size_t have = lab->len[rank];
    char *whole = have > 0 && n > 0 ? malloc(have + n) : NULL; /* \r needs the whole line */
    if (whole) {
        memcpy(whole, lab->partial[rank], have);
        memcpy(whole + have, rest, n);
        render_write_visible(lab->out, whole, have + n);
        free(whole);
    } else {
        if (have > 0) render_write_visible(lab->out, lab->partial[rank], have);
        if (n > 0) render_write_visible(lab->out, rest, n);
    }
    fputc('\n', lab->out);
    lab->len[rank] = 0;
}

void labeller_feed(line_labeller *lab, int rank, const char *bytes, size_t len) {
    if (rank < 0 || rank >= lab->nranks) {
        fwrite(bytes, 1, len, lab->out);
        fflush(lab->out);
        return;
    }
    const char *p = bytes, *end = bytes + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl) {
            labeller_line(lab, rank, p, (size_t)(nl - p));
            p = nl + 1;
            continue;
        }
        /* a rank that prints without newlines (io.write in a loop) is shown in pieces of
         * LABELLER_MAX_LINE: nothing waits for a newline that may never come, and memory
         * stays bounded */
        size_t n = (size_t)(end - p), room = LABELLER_MAX_LINE - lab->len[rank];
        if (n > room) n = room;
        char *grown = realloc(lab->partial[rank], lab->len[rank] + n);
        if (!grown) { /* out of memory: write what we have rather than lose it */
            labeller_line(lab, rank, p, n);
            p += n;
            continue;
        }
        memcpy(grown + lab->len[rank], p, n);
        lab->partial[rank] = grown;
        lab->len[rank] += n;
        p += n;
        if (lab->len[rank] == LABELLER_MAX_LINE) labeller_line(lab, rank, NULL, 0);
    }
    fflush(lab->out);
}

void labeller_flush(line_labeller *lab) {
    for (int r = 0; r < lab->nranks; r++)
        if (lab->len[r] > 0) labeller_line(lab, r, "", 0);
    fflush(lab->out);
}

void labeller_free(line_labeller *lab) {
    if (!lab) return;
    if (lab->partial && lab->len) labeller_flush(lab);
    if (lab->partial)
        for (int r = 0; r < lab->nranks; r++) free(lab->partial[r]);
    free(lab->partial);
    free(lab->len);
    free(lab);
}
