/* What recording a switch would cost if switchtrace's hot path were compiled.
 *
 * A measurement, not part of switchtrace: benchmarks/compiled_floor.py builds
 * it, and benchmarks/switch_cost.py --compiled times it against switchtrace's
 * own patches on the same real sync_to_async and async_to_sync calls.
 *
 * The same patch points as switchtrace's (SyncToAsync.__call__, the
 * executors' submit, AsyncToSync.__call__ and main_wrap) record what
 * switchtrace's record of a crossing holds: mechanism, bridge, bridged
 * callable, parent crossing, caller and target threads, executor, loop,
 * the call, start, end and return times, and the request's four counters,
 * counting a start only while the caller waits and a return only after a
 * start (switchtrace's claims). Left out, because they are off the path
 * measured here: a crossing given a context, request code's own offloads,
 * loops created by a crossing, swallowing its own errors (here they raise),
 * describing call sites, the request's end.
 *
 * Two designs of the sync_to_async side:
 *   0 (switchtrace's): the crossing is made current in the caller's task
 *     (context variable set on the first step of a coroutine-like layer and
 *     reset at its end) before asgiref copies the context, and the caller's
 *     value is put back once the executor has the call;
 *   1 (copied context): the caller's context is never touched. The layer
 *     hands the crossing to submit through a per-thread slot for the
 *     duration of its first step, and the callable given to the executor
 *     makes the crossing current inside the context asgiref copied (read
 *     from asgiref's private arguments to thread_handler: a Context's
 *     ``run`` up to 3.12, a closure over ``context`` in 3.13), and takes it
 *     out again before the caller resumes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

static PyObject *here_var;         /* the context variable: (record, crossing or None) */
static PyObject *get_running_loop; /* asyncio.events._get_running_loop */
static PyObject *threads_active;   /* threading._active */
static PyObject *orig_s2a_call, *orig_a2s_call, *orig_main_wrap, *orig_submit_pool, *orig_submit_current;
static PyObject *str_args, *str_func, *str_awaitable, *str_throw, *str_close;
static int design = 0;
static _Thread_local PyObject *pending = NULL; /* design 1: the layer whose first step runs */

enum { SYNC_TO_ASYNC, ASYNC_TO_SYNC };

static inline long long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.perf_counter_ns's clock on Linux */
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* threading.current_thread() for a thread threading knows, else None. */
static PyObject *
current_thread(unsigned long *ident_out)
{
    unsigned long ident = PyThread_get_thread_ident();
    if (ident_out)
        *ident_out = ident;
    PyObject *key = PyLong_FromUnsignedLong(ident);
    if (key == NULL)
        return NULL;
    PyObject *thread = PyDict_GetItemWithError(threads_active, key);
    Py_DECREF(key);
    if (thread == NULL && PyErr_Occurred())
        return NULL;
    return Py_NewRef(thread ? thread : Py_None);
}

/* -- the request's record ------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int finished;
    Py_ssize_t max_events;
    PyObject *crossings;
    long long started, returned, hops_started, hops_returned, dropped;
} Record;

static PyMemberDef Record_members[] = {
    {"crossings", T_OBJECT, offsetof(Record, crossings), READONLY, NULL},
    {"started", T_LONGLONG, offsetof(Record, started), READONLY, NULL},
    {"returned", T_LONGLONG, offsetof(Record, returned), READONLY, NULL},
    {"hops_started", T_LONGLONG, offsetof(Record, hops_started), READONLY, NULL},
    {"hops_returned", T_LONGLONG, offsetof(Record, hops_returned), READONLY, NULL},
    {"dropped", T_LONGLONG, offsetof(Record, dropped), READONLY, NULL},
    {NULL}};

static int
Record_init(Record *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"max_events", NULL};
    self->max_events = 1000;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n", names, &self->max_events))
        return -1;
    Py_XSETREF(self->crossings, PyList_New(0));
    return self->crossings ? 0 : -1;
}

static void
Record_dealloc(Record *self)
{
    Py_XDECREF(self->crossings);
    Py_TYPE(self)->tp_free(self);
}

static PyTypeObject RecordType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "compiled_floor.Record",
    .tp_basicsize = sizeof(Record),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Record_init,
    .tp_dealloc = (destructor)Record_dealloc,
    .tp_members = Record_members,
};

/* -- a crossing ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    int mechanism, started, closed;
    PyObject *bridge, *func, *parent, *source_thread, *target_thread, *executor;
    unsigned long source_ident;
    long long loop_id, call_ns, start_ns, end_ns, return_ns;
} Crossing;

static PyMemberDef Crossing_members[] = {
    {"mechanism", T_INT, offsetof(Crossing, mechanism), READONLY, NULL},
    {"bridge", T_OBJECT, offsetof(Crossing, bridge), READONLY, NULL},
    {"func", T_OBJECT, offsetof(Crossing, func), READONLY, NULL},
    {"parent", T_OBJECT, offsetof(Crossing, parent), READONLY, NULL},
    {"source_thread", T_OBJECT, offsetof(Crossing, source_thread), READONLY, NULL},
    {"target_thread", T_OBJECT, offsetof(Crossing, target_thread), READONLY, NULL},
    {"executor", T_OBJECT, offsetof(Crossing, executor), READONLY, NULL},
    {"loop_id", T_LONGLONG, offsetof(Crossing, loop_id), READONLY, NULL},
    {"call_ns", T_LONGLONG, offsetof(Crossing, call_ns), READONLY, NULL},
    {"start_ns", T_LONGLONG, offsetof(Crossing, start_ns), READONLY, NULL},
    {"end_ns", T_LONGLONG, offsetof(Crossing, end_ns), READONLY, NULL},
    {"return_ns", T_LONGLONG, offsetof(Crossing, return_ns), READONLY, NULL},
    {NULL}};

static int
Crossing_traverse(Crossing *self, visitproc visit, void *arg)
{
    Py_VISIT(self->bridge);
    Py_VISIT(self->func);
    Py_VISIT(self->parent);
    Py_VISIT(self->source_thread);
    Py_VISIT(self->target_thread);
    Py_VISIT(self->executor);
    return 0;
}

static int
Crossing_clear(Crossing *self)
{
    Py_CLEAR(self->bridge);
    Py_CLEAR(self->func);
    Py_CLEAR(self->parent);
    Py_CLEAR(self->source_thread);
    Py_CLEAR(self->target_thread);
    Py_CLEAR(self->executor);
    return 0;
}

static void
Crossing_dealloc(Crossing *self)
{
    PyObject_GC_UnTrack(self);
    Crossing_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static PyTypeObject CrossingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "compiled_floor.Crossing",
    .tp_basicsize = sizeof(Crossing),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)Crossing_dealloc,
    .tp_traverse = (traverseproc)Crossing_traverse,
    .tp_clear = (inquiry)Crossing_clear,
    .tp_members = Crossing_members,
};

static Crossing *
new_crossing(int mechanism, PyObject *bridge, PyObject *func, PyObject *parent)
{
    Crossing *c = PyObject_GC_New(Crossing, &CrossingType);
    if (c == NULL)
        return NULL;
    c->mechanism = mechanism;
    c->started = c->closed = 0;
    c->bridge = Py_NewRef(bridge);
    c->func = Py_XNewRef(func);
    c->parent = Py_NewRef(parent);
    c->target_thread = c->executor = NULL;
    c->loop_id = c->start_ns = c->end_ns = c->return_ns = 0;
    c->source_thread = current_thread(&c->source_ident);
    PyObject_GC_Track(c);
    if (c->source_thread == NULL) {
        Py_DECREF(c);
        return NULL;
    }
    c->call_ns = now_ns();
    return c;
}

/* The target side: the code starts (RequestRecord.start). */
static int
start(Record *r, Crossing *c)
{
    c->started = 1;
    if (c->closed || r->finished)
        return 0;
    c->start_ns = now_ns();
    PyObject *thread = current_thread(NULL);
    if (thread == NULL)
        return -1;
    Py_XSETREF(c->target_thread, thread);
    r->started++;
    if (thread != c->source_thread)
        r->hops_started++;
    if (PyList_GET_SIZE(r->crossings) < r->max_events)
        return PyList_Append(r->crossings, (PyObject *)c);
    r->dropped++;
    return 0;
}

/* The caller side: control is back (RequestRecord.close). */
static void
close_crossing(Record *r, Crossing *c)
{
    c->return_ns = now_ns();
    c->closed = 1;
    if (c->started && !r->finished) {
        r->returned++;
        if (c->target_thread != c->source_thread)
            r->hops_returned++;
    }
}

/* -- the coroutine layer ---------------------------------------------------- */

enum { AROUND_CALL, AROUND_MAIN_WRAP };

typedef struct {
    PyObject_HEAD
    PyObject *coro, *token;
    Record *record;
    Crossing *crossing;
    int kind, begun;
} Layer;

static int
Layer_traverse(Layer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->coro);
    Py_VISIT(self->token);
    Py_VISIT(self->record);
    Py_VISIT(self->crossing);
    return 0;
}

static int
Layer_clear(Layer *self)
{
    Py_CLEAR(self->coro);
    Py_CLEAR(self->token);
    Py_CLEAR(self->record);
    Py_CLEAR(self->crossing);
    return 0;
}

static void
Layer_dealloc(Layer *self)
{
    PyObject_GC_UnTrack(self);
    Layer_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static int
layer_begin(Layer *self)
{
    self->begun = 1;
    if (self->kind == AROUND_MAIN_WRAP) {
        /* In the target loop, on its thread: the switch there. */
        PyObject *loop = PyObject_CallNoArgs(get_running_loop);
        if (loop == NULL)
            return -1;
        self->crossing->loop_id = (long long)(uintptr_t)loop;
        Py_DECREF(loop);
        return start(self->record, self->crossing);
    }
    if (design == 1) {
        pending = (PyObject *)self;
        return 0;
    }
    PyObject *value = PyTuple_Pack(2, (PyObject *)self->record, (PyObject *)self->crossing);
    if (value == NULL)
        return -1;
    self->token = PyContextVar_Set(here_var, value);
    Py_DECREF(value);
    return self->token ? 0 : -1;
}

static void
layer_end(Layer *self)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (self->kind == AROUND_MAIN_WRAP) {
        long long end = now_ns();
        long long returned = self->crossing->return_ns;
        self->crossing->end_ns = returned == 0 || end < returned ? end : returned;
    }
    else {
        if (self->token != NULL) {
            if (PyContextVar_Reset(here_var, self->token) < 0)
                PyErr_Clear();
            Py_CLEAR(self->token);
        }
        close_crossing(self->record, self->crossing);
    }
    PyErr_Restore(type, value, tb);
}

/* One step of the coroutine: its result, or NULL with StopIteration (its
 * return value) or its exception set. */
static PyObject *
layer_step(Layer *self, PyObject *arg)
{
    PyObject *result = NULL;
    if (!self->begun && layer_begin(self) < 0)
        return NULL;
    PySendResult sent = PyIter_Send(self->coro, arg, &result);
    pending = NULL;
    if (sent == PYGEN_NEXT)
        return result;
    layer_end(self);
    if (sent == PYGEN_ERROR)
        return NULL;
    /* StopIteration(result), built so that a tuple or an exception returned
     * is its one argument. */
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result);
    Py_DECREF(result);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
    return NULL;
}

static PyObject *
Layer_iternext(Layer *self)
{
    return layer_step(self, Py_None);
}

static PyObject *
Layer_send(Layer *self, PyObject *arg)
{
    return layer_step(self, arg);
}

static PyObject *
Layer_throw(Layer *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* The coroutine's own throw, given the same arguments. */
    PyObject *given[4] = {self->coro};
    if (nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected at most 3 arguments");
        return NULL;
    }
    memcpy(given + 1, args, nargs * sizeof(PyObject *));
    if (!self->begun && layer_begin(self) < 0)
        return NULL;
    PyObject *result = PyObject_VectorcallMethod(str_throw, given, nargs + 1, NULL);
    pending = NULL;
    if (result == NULL)
        layer_end(self);
    return result;
}

static PyObject *
Layer_close(Layer *self, PyObject *unused)
{
    return PyObject_CallMethodNoArgs(self->coro, str_close);
}

static PyObject *
Layer_await(Layer *self)
{
    return Py_NewRef(self);
}

static PyMethodDef Layer_methods[] = {
    {"send", (PyCFunction)Layer_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))Layer_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)Layer_close, METH_NOARGS, NULL},
    {NULL}};

static PyAsyncMethods Layer_async = {.am_await = (unaryfunc)Layer_await};

static PyTypeObject LayerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "compiled_floor.Layer",
    .tp_basicsize = sizeof(Layer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)Layer_dealloc,
    .tp_traverse = (traverseproc)Layer_traverse,
    .tp_clear = (inquiry)Layer_clear,
    .tp_as_async = &Layer_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Layer_iternext,
    .tp_methods = Layer_methods,
};

/* Steals ``coro``. */
static PyObject *
new_layer(PyObject *coro, Record *record, Crossing *crossing, int kind)
{
    Layer *self = PyObject_GC_New(Layer, &LayerType);
    if (self == NULL) {
        Py_DECREF(coro);
        return NULL;
    }
    self->coro = coro;
    self->token = NULL;
    self->record = (Record *)Py_NewRef(record);
    self->crossing = (Crossing *)Py_NewRef(crossing);
    self->kind = kind;
    self->begun = 0;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* -- what the executor runs in place of asgiref's thread_handler partial ---- */

typedef struct {
    PyObject_HEAD
    PyObject *fn, *context;
    Record *record;
    Crossing *crossing;
    vectorcallfunc vectorcall;
} Arrive;

static int
Arrive_traverse(Arrive *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fn);
    Py_VISIT(self->context);
    Py_VISIT(self->record);
    Py_VISIT(self->crossing);
    return 0;
}

static int
Arrive_clear(Arrive *self)
{
    Py_CLEAR(self->fn);
    Py_CLEAR(self->context);
    Py_CLEAR(self->record);
    Py_CLEAR(self->crossing);
    return 0;
}

static void
Arrive_dealloc(Arrive *self)
{
    PyObject_GC_UnTrack(self);
    Arrive_clear(self);
    Py_TYPE(self)->tp_free(self);
}

/* ``context.run(here_var.set, value)`` or ``.reset(token)`` without a Python
 * call: NULL (and no error) if the context is entered elsewhere. */
static PyObject *
set_in(PyObject *context, PyObject *value)
{
    if (PyContext_Enter(context) < 0) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *token = PyContextVar_Set(here_var, value);
    if (token == NULL)
        PyErr_Clear();
    PyContext_Exit(context);
    return token;
}

static void
reset_in(PyObject *context, PyObject *token)
{
    if (PyContext_Enter(context) < 0) {
        PyErr_Clear();
        return;
    }
    if (PyContextVar_Reset(here_var, token) < 0)
        PyErr_Clear();
    PyContext_Exit(context);
}

static PyObject *
Arrive_vectorcall(Arrive *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* On the executor's thread: the switch there. */
    Crossing *c = self->crossing;
    PyObject *token = NULL;
    if (start(self->record, c) < 0)
        return NULL;
    if (self->context != NULL) {
        PyObject *value = PyTuple_Pack(2, (PyObject *)self->record, (PyObject *)c);
        if (value == NULL)
            return NULL;
        token = set_in(self->context, value);
        Py_DECREF(value);
    }
    PyObject *result = PyObject_Vectorcall(self->fn, args, nargsf, kwnames);
    c->end_ns = now_ns();
    if (token != NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        reset_in(self->context, token);
        Py_DECREF(token);
        PyErr_Restore(type, value, tb);
    }
    return result;
}

static PyTypeObject ArriveType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "compiled_floor.Arrive",
    .tp_basicsize = sizeof(Arrive),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_dealloc = (destructor)Arrive_dealloc,
    .tp_traverse = (traverseproc)Arrive_traverse,
    .tp_clear = (inquiry)Arrive_clear,
    .tp_vectorcall_offset = offsetof(Arrive, vectorcall),
    .tp_call = PyVectorcall_Call,
};

/* -- patches: method descriptors calling C with ``self`` first --------------- */

typedef PyObject *(*patchfunc)(PyObject *const *args, size_t nargs, PyObject *kwnames);

typedef struct {
    PyObject_HEAD
    patchfunc fn;
    vectorcallfunc vectorcall;
} Patch;

static PyObject *
Patch_vectorcall(Patch *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    size_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "a patched method needs self");
        return NULL;
    }
    return self->fn(args, nargs, kwnames);
}

static PyObject *
Patch_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static void
Patch_dealloc(Patch *self)
{
    Py_TYPE(self)->tp_free(self);
}

static PyTypeObject PatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "compiled_floor.Patch",
    .tp_basicsize = sizeof(Patch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_dealloc = (destructor)Patch_dealloc,
    .tp_descr_get = Patch_get,
    .tp_vectorcall_offset = offsetof(Patch, vectorcall),
    .tp_call = PyVectorcall_Call,
};

/* The (record, crossing) current here while its request is in flight, as a
 * new reference; NULL (no error) outside one. */
static PyObject *
active(void)
{
    PyObject *here;
    if (PyContextVar_Get(here_var, NULL, &here) < 0) {
        PyErr_Clear();
        return NULL;
    }
    if (here == NULL || here == Py_None || !PyTuple_CheckExact(here) || PyTuple_GET_SIZE(here) != 2 ||
        Py_TYPE(PyTuple_GET_ITEM(here, 0)) != &RecordType ||
        ((Record *)PyTuple_GET_ITEM(here, 0))->finished) {
        Py_XDECREF(here);
        return NULL;
    }
    return here;
}

static PyObject *
s2a_call(PyObject *const *args, size_t nargs, PyObject *kwnames)
{
    /* In the caller's task, on the event loop's thread. */
    PyObject *coro = PyObject_Vectorcall(orig_s2a_call, args, nargs, kwnames);
    PyObject *here = coro ? active() : NULL;
    if (here == NULL)
        return coro;
    Record *record = (Record *)PyTuple_GET_ITEM(here, 0);
    PyObject *func = PyObject_GetAttr(args[0], str_func);
    Crossing *c = func ? new_crossing(SYNC_TO_ASYNC, args[0], func, PyTuple_GET_ITEM(here, 1)) : NULL;
    Py_XDECREF(func);
    PyObject *loop = c ? PyObject_CallNoArgs(get_running_loop) : NULL;
    if (loop == NULL) {
        Py_XDECREF(c);
        Py_DECREF(here);
        Py_DECREF(coro);
        return NULL;
    }
    c->loop_id = (long long)(uintptr_t)loop;
    Py_DECREF(loop);
    PyObject *layer = new_layer(coro, record, c, AROUND_CALL);
    Py_DECREF(c);
    Py_DECREF(here);
    return layer;
}

/* asgiref's copied context, from thread_handler's partial: its ``func``
 * argument is the context's ``run`` (asgiref 3.8-3.12) or a function closing
 * over ``context`` (3.13). */
static PyObject *
copied_context(PyObject *partial)
{
    static PyObject *code_seen = NULL;
    static Py_ssize_t cell_index = -1;
    PyObject *context = NULL;
    PyObject *args = PyObject_GetAttr(partial, str_args);
    if (args == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (PyTuple_Check(args) && PyTuple_GET_SIZE(args) >= 4) {
        PyObject *func = PyTuple_GET_ITEM(args, 3);
        if (PyCFunction_Check(func))
            context = PyCFunction_GET_SELF(func);
        else if (PyFunction_Check(func) && PyFunction_GET_CLOSURE(func) != NULL) {
            PyObject *code = PyFunction_GET_CODE(func);
            if (code != code_seen) {
                PyObject *names = PyObject_GetAttrString(code, "co_freevars");
                cell_index = -1;
                for (Py_ssize_t i = 0; names && i < PyTuple_GET_SIZE(names); i++)
                    if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(names, i), "context") == 0)
                        cell_index = i;
                Py_XDECREF(names);
                PyErr_Clear();
                Py_XSETREF(code_seen, Py_NewRef(code));
            }
            if (cell_index >= 0)
                context = PyCell_GET(PyTuple_GET_ITEM(PyFunction_GET_CLOSURE(func), cell_index));
        }
    }
    context = context != NULL && PyContext_CheckExact(context) ? Py_NewRef(context) : NULL;
    Py_DECREF(args);
    return context;
}

static PyObject *
submit(PyObject *original, PyObject *const *args, size_t nargs, PyObject *kwnames)
{
    /* On the loop's thread, inside loop.run_in_executor. */
    PyObject *here = NULL;
    Record *record;
    Crossing *c;
    if (nargs < 2)
        return PyObject_Vectorcall(original, args, nargs, kwnames);
    if (design == 1) {
        if (pending == NULL)
            return PyObject_Vectorcall(original, args, nargs, kwnames);
        record = ((Layer *)pending)->record;
        c = ((Layer *)pending)->crossing;
        pending = NULL;
    }
    else {
        here = active();
        if (here == NULL)
            return PyObject_Vectorcall(original, args, nargs, kwnames);
        record = (Record *)PyTuple_GET_ITEM(here, 0);
        c = (Crossing *)PyTuple_GET_ITEM(here, 1);
        if (Py_TYPE(c) != &CrossingType) {
            Py_DECREF(here);
            return PyObject_Vectorcall(original, args, nargs, kwnames);
        }
    }
    if (c->mechanism != SYNC_TO_ASYNC || c->executor != NULL ||
        c->source_ident != PyThread_get_thread_ident()) {
        Py_XDECREF(here);
        return PyObject_Vectorcall(original, args, nargs, kwnames);
    }
    Arrive *arrive = PyObject_GC_New(Arrive, &ArriveType);
    if (arrive == NULL) {
        Py_XDECREF(here);
        return NULL;
    }
    arrive->fn = Py_NewRef(args[1]);
    arrive->context = design == 1 ? copied_context(args[1]) : NULL;
    arrive->record = (Record *)Py_NewRef(record);
    arrive->crossing = (Crossing *)Py_NewRef(c);
    arrive->vectorcall = (vectorcallfunc)Arrive_vectorcall;
    PyObject_GC_Track(arrive);
    c->executor = Py_NewRef(args[0]);

    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8], **given = total <= 8 ? small : PyMem_Malloc(total * sizeof(PyObject *));
    PyObject *future = NULL;
    if (given == NULL)
        PyErr_NoMemory();
    else {
        memcpy(given, args, total * sizeof(PyObject *));
        given[1] = (PyObject *)arrive;
        future = PyObject_Vectorcall(original, given, nargs, kwnames);
        if (given != small)
            PyMem_Free(given);
    }
    Py_DECREF(arrive);
    if (future != NULL && here != NULL) {
        /* The caller's context is given back what the caller saw. */
        PyObject *caller = PyTuple_Pack(2, (PyObject *)record, c->parent);
        PyObject *token = caller ? PyContextVar_Set(here_var, caller) : NULL;
        Py_XDECREF(caller);
        Py_XDECREF(token);
        if (token == NULL)
            Py_CLEAR(future);
    }
    Py_XDECREF(here);
    return future;
}

static PyObject *
submit_pool(PyObject *const *args, size_t nargs, PyObject *kwnames)
{
    return submit(orig_submit_pool, args, nargs, kwnames);
}

static PyObject *
submit_current(PyObject *const *args, size_t nargs, PyObject *kwnames)
{
    return submit(orig_submit_current, args, nargs, kwnames);
}

static PyObject *
a2s_call(PyObject *const *args, size_t nargs, PyObject *kwnames)
{
    /* On the calling synchronous thread, which blocks until the awaitable is done. */
    PyObject *here = active();
    if (here == NULL)
        return PyObject_Vectorcall(orig_a2s_call, args, nargs, kwnames);
    Record *record = (Record *)PyTuple_GET_ITEM(here, 0);
    PyObject *awaitable = PyObject_GetAttr(args[0], str_awaitable);
    Crossing *c = awaitable ? new_crossing(ASYNC_TO_SYNC, args[0], awaitable, PyTuple_GET_ITEM(here, 1)) : NULL;
    Py_XDECREF(awaitable);
    PyObject *value = c ? PyTuple_Pack(2, (PyObject *)record, (PyObject *)c) : NULL;
    PyObject *token = value ? PyContextVar_Set(here_var, value) : NULL;
    Py_XDECREF(value);
    if (token == NULL) {
        Py_XDECREF(c);
        Py_DECREF(here);
        return NULL;
    }
    PyObject *result = PyObject_Vectorcall(orig_a2s_call, args, nargs, kwnames);
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    if (PyContextVar_Reset(here_var, token) < 0)
        PyErr_Clear();
    close_crossing(record, c);
    PyErr_Restore(type, exc, tb);
    Py_DECREF(token);
    Py_DECREF(c);
    Py_DECREF(here);
    return result;
}

static PyObject *
main_wrap(PyObject *const *args, size_t nargs, PyObject *kwnames)
{
    /* On the calling thread: the coroutine asgiref will run in the loop. */
    PyObject *coro = PyObject_Vectorcall(orig_main_wrap, args, nargs, kwnames);
    PyObject *here = coro ? active() : NULL;
    if (here == NULL)
        return coro;
    Crossing *c = (Crossing *)PyTuple_GET_ITEM(here, 1);
    if (Py_TYPE(c) != &CrossingType || c->bridge != args[0] || c->start_ns != 0) {
        Py_DECREF(here);
        return coro;
    }
    PyObject *layer = new_layer(coro, (Record *)PyTuple_GET_ITEM(here, 0), c, AROUND_MAIN_WRAP);
    Py_DECREF(here);
    return layer;
}

static PyObject *
new_patch(patchfunc fn)
{
    Patch *self = PyObject_New(Patch, &PatchType);
    if (self == NULL)
        return NULL;
    self->fn = fn;
    self->vectorcall = (vectorcallfunc)Patch_vectorcall;
    return (PyObject *)self;
}

PyDoc_STRVAR(setup_doc,
"setup(here_var, get_running_loop, threads_active, s2a_call, a2s_call, main_wrap, submit_pool, submit_current)\n"
"-> the five replacements, in that order. Once per process.");

static PyObject *
setup(PyObject *module, PyObject *args)
{
    if (here_var != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "setup() was called already");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &here_var, &get_running_loop, &threads_active,
                          &orig_s2a_call, &orig_a2s_call, &orig_main_wrap, &orig_submit_pool,
                          &orig_submit_current))
        return NULL;
    Py_INCREF(here_var);
    Py_INCREF(get_running_loop);
    Py_INCREF(threads_active);
    Py_INCREF(orig_s2a_call);
    Py_INCREF(orig_a2s_call);
    Py_INCREF(orig_main_wrap);
    Py_INCREF(orig_submit_pool);
    Py_INCREF(orig_submit_current);
    return Py_BuildValue("(NNNNN)", new_patch(s2a_call), new_patch(a2s_call), new_patch(main_wrap),
                         new_patch(submit_pool), new_patch(submit_current));
}

static PyObject *
set_design(PyObject *module, PyObject *arg)
{
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    if (value != 0 && value != 1) {
        PyErr_SetString(PyExc_ValueError, "design is 0 (switchtrace's) or 1 (copied context)");
        return NULL;
    }
    design = (int)value;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, setup_doc},
    {"set_design", set_design, METH_O, "0: switchtrace's design; 1: the copied context's."},
    {NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "compiled_floor", NULL, -1, methods};

PyMODINIT_FUNC
PyInit_compiled_floor(void)
{
    if (PyType_Ready(&RecordType) < 0 || PyType_Ready(&CrossingType) < 0 ||
        PyType_Ready(&LayerType) < 0 || PyType_Ready(&ArriveType) < 0 || PyType_Ready(&PatchType) < 0)
        return NULL;
    str_args = PyUnicode_InternFromString("args");
    str_func = PyUnicode_InternFromString("func");
    str_awaitable = PyUnicode_InternFromString("awaitable");
    str_throw = PyUnicode_InternFromString("throw");
    str_close = PyUnicode_InternFromString("close");
    if (!str_args || !str_func || !str_awaitable || !str_throw || !str_close)
        return NULL;
    PyObject *module = PyModule_Create(&moddef);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObject(module, "Record", Py_NewRef(&RecordType)) < 0) {
        Py_DECREF(&RecordType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
