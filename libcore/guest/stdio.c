/* Standard input and output. Output is buffered in the guest's output
 * buffer and handed over at the wait point; input arrives a chunk at a time
 * through the INPUT hypercall, which is the wait point when a request is used
 * up. Standard error is written through at once. The three look like a
 * terminal to ioctl. */
#include "kernel.h"

u64 psn_out_len; /* read by the monitor when it stops the guest */
static u64 in_pos, in_len, eof;

static struct psn_hc_input hc_in;
static struct psn_hc_write hc_wr;

static void flush_out(void) {
    if (!psn_out_len)
        return;
    hc_wr.fd = 1;
    hc_wr.addr = boot->out_buf;
    hc_wr.len = psn_out_len;
    hypercall(PSN_HC_WRITE, &hc_wr);
    psn_out_len = 0;
}
void write_out(const u8* p, u64 n) {
    if (psn_out_len + n > PSN_IO_BUFFER_SIZE)
        flush_out();
    if (n > PSN_IO_BUFFER_SIZE) {
        /* straight from user memory: the monitor checks the range */
        hc_wr.fd = 1;
        hc_wr.addr = (u64)p;
        hc_wr.len = n;
        hypercall(PSN_HC_WRITE, &hc_wr);
        return;
    }
    memcpy((u8*)boot->out_buf + psn_out_len, p, n);
    psn_out_len += n;
}
void write_err(const u8* p, u64 n) {
    hc_wr.fd = 2;
    hc_wr.addr = (u64)p;
    hc_wr.len = n;
    hypercall(PSN_HC_WRITE, &hc_wr);
}
/* Refills the input buffer. When the last request is used up this is the
 * wait point: the buffered output is the response. */
static void refill_input(void) {
    hc_in.out_addr = boot->out_buf;
    hc_in.out_len = psn_out_len;
    hypercall(PSN_HC_INPUT, &hc_in);
    psn_out_len = 0;
    in_pos = 0;
    in_len = hc_in.in_len > PSN_IO_BUFFER_SIZE ? PSN_IO_BUFFER_SIZE : hc_in.in_len;
    eof = hc_in.eof;
    reseed_if_restored();
    clock_at_input(&hc_in);
}
i64 read_stdin(u8* p, u64 n) {
    if (in_pos == in_len) {
        if (eof)
            return 0;
        refill_input();
        if (in_pos == in_len)
            return 0;
    }
    u64 k = in_len - in_pos;
    if (k > n)
        k = n;
    memcpy(p, (u8*)boot->in_buf + in_pos, k);
    in_pos += k;
    return (i64)k;
}

/* Standard input, output and error look like a terminal in canonical mode,
 * 80 columns by 24 rows. */
#define TTY_ROWS 24
#define TTY_COLS 80

i64 sys_ioctl(i64 fd, u64 req, u64 arg) {
    if (!fd_ok(fd))
        return -EBADF;
    u32 k = fds[fd].kind;
    if (k != FD_TTY_IN && k != FD_TTY_OUT && k != FD_TTY_ERR)
        return -ENOTTY;
    if (req == TCGETS) {
        if (!user_ok(arg, sizeof(struct termios)))
            return -EFAULT;
        struct termios* t = (struct termios*)arg;
        memset(t, 0, sizeof *t);
        t->c_iflag = ICRNL | IXON;
        t->c_oflag = OPOST | ONLCR;
        t->c_cflag = B38400 | CS8 | CREAD;
        t->c_lflag = ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN;
        return 0;
    }
    if (req == TIOCGWINSZ) {
        if (!user_ok(arg, sizeof(struct winsize)))
            return -EFAULT;
        struct winsize* w = (struct winsize*)arg;
        w->ws_row = TTY_ROWS;
        w->ws_col = TTY_COLS;
        w->ws_xpixel = w->ws_ypixel = 0;
        return 0;
    }
    return -EINVAL;
}
