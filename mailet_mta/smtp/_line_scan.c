/* C versions of the two scans DATA makes over every octet of a message body.
 *
 * mailet_mta.smtp.data_reader uses them when this module is built and its own
 * pure-Python versions otherwise; tests/unit/test_smtp_data_reader.py checks that both
 * give the same answers. Each function reads the buffer once with memchr (which the C
 * library vectorises) and allocates nothing; the buffer is read-only and every access
 * stays inside [start, start + length).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* 1 when [p, p + n) holds a CR not followed by LF or an LF not preceded by CR. */
static int
bare_line_end(const unsigned char *p, Py_ssize_t n)
{
    const unsigned char *end = p + n;
    const unsigned char *q = p;

    while (q < end) {
        const unsigned char *lf = memchr(q, '\n', (size_t)(end - q));
        if (lf == NULL)                         /* no line end left: any CR is bare */
            return memchr(q, '\r', (size_t)(end - q)) != NULL;
        if (lf == p || lf[-1] != '\r')          /* an LF without its CR */
            return 1;
        /* lf - 1 >= q here (lf == q would have lf[-1] == '\n' or lf == p): the first
           CR of this line must be the one just before its LF. */
        if (memchr(q, '\r', (size_t)(lf - 1 - q)) != NULL)
            return 1;
        q = lf + 1;
    }
    return 0;
}

/* The offset of the first "\r\n." at or after start, or -1. */
static Py_ssize_t
find_line_dot(const unsigned char *p, Py_ssize_t n, Py_ssize_t start)
{
    const unsigned char *end = p + n;
    const unsigned char *q;

    if (start < 0)
        start = 0;
    if (n - start < 3)
        return -1;
    q = p + start + 1;                          /* the LF of a match at start or later */
    while (q < end - 1) {
        const unsigned char *lf = memchr(q, '\n', (size_t)(end - 1 - q));
        if (lf == NULL)
            return -1;
        if (lf[-1] == '\r' && lf[1] == '.')     /* lf > p and lf + 1 < end */
            return (lf - 1) - p;
        q = lf + 1;
    }
    return -1;
}

static PyObject *
py_bare_line_end(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    int bare;

    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    bare = bare_line_end((const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyBool_FromLong(bare);
}

static PyObject *
py_find_line_dot(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t start = 0, found;

    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "find_line_dot(buffer, start=0)");
        return NULL;
    }
    if (nargs == 2) {
        start = PyLong_AsSsize_t(args[1]);
        if (start == -1 && PyErr_Occurred())
            return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    found = find_line_dot((const unsigned char *)view.buf, view.len, start);
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(found);
}

static PyMethodDef methods[] = {
    {"bare_line_end", py_bare_line_end, METH_O,
     "bare_line_end(buffer) -> bool: a CR not followed by LF or an LF not preceded by CR."},
    {"find_line_dot", (PyCFunction)(void (*)(void))py_find_line_dot, METH_FASTCALL,
     "find_line_dot(buffer, start=0) -> int: buffer.find(b'\\r\\n.', start)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_line_scan",
    "C versions of DATA's line-end check and stuffed-line search.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__line_scan(void)
{
    return PyModule_Create(&module);
}
