// ComfyUMe validator `c-flux2-size`, in C: one real rule of the built-in
// `flux2-klein` validator (plugins/validator-flux2-klein).
//
// A graph is of the FLUX.2 Klein family when it has an `EmptyFlux2LatentImage`
// or a `Flux2Scheduler` node; any other graph is `not-applicable`.
//
// Rule: every width and height of those two nodes must be a multiple of 16
// (the VAE downsamples 8x and the transformer packs 2x2 latent patches;
// ComfyUI's widget step is 16 and other sizes are silently cropped), at least
// 256 and at most 2048 pixels. A value is followed through links to
// `PrimitiveInt`/`PrimitiveFloat` nodes, and a problem is reported at the node
// and input where the literal lives (`75:68` / `value` in the text-to-image
// template), so the editor highlights the right widget. A size computed from
// an image (`GetImageSize`) is not known here and never refused.
//
// Accepted graphs get the workflow kind `flux2-klein` and the built-in's cost
// formula: 2 s + 0.4 s per megapixel-step.
//
// No stdio: printf and friends would pull in WASI file imports, which the
// component would then need an adapter for. Messages are built by `msg_*`.
//
// Memory: the host gives us the graph (we free it at the end); everything we
// return is malloc'd and freed by the generated post-return code. Each call
// runs in a fresh instance, so nothing outlives it anyway.

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "validator.h"

typedef exports_comfyume_plugin_validation_node_t node_t;
typedef exports_comfyume_plugin_validation_list_node_t graph_t;
typedef exports_comfyume_plugin_validation_input_value_t value_t;
typedef exports_comfyume_plugin_validation_problem_t problem_t;
typedef exports_comfyume_plugin_validation_verdict_t verdict_t;

#define SIDE_STEP 16
#define MIN_SIDE 256
#define MAX_SIDE 2048
#define DEFAULT_SIDE 1024
#define MAX_DEPTH 16
#define MAX_PROBLEMS 32

static bool str_eq(const validator_string_t *s, const char *c) {
  size_t n = strlen(c);
  return s->len == n && memcmp(s->ptr, c, n) == 0;
}

static bool same(const validator_string_t *a, const validator_string_t *b) {
  return a->len == b->len && memcmp(a->ptr, b->ptr, a->len) == 0;
}

static const node_t *find_node(const graph_t *g, const validator_string_t *id) {
  for (size_t i = 0; i < g->len; i++)
    if (same(&g->ptr[i].id, id)) return &g->ptr[i];
  return NULL;
}

static const value_t *find_input(const node_t *n, const char *name,
                                 const validator_string_t **name_out) {
  for (size_t i = 0; i < n->inputs.len; i++) {
    if (str_eq(&n->inputs.ptr[i].name, name)) {
      *name_out = &n->inputs.ptr[i].name;
      return &n->inputs.ptr[i].value;
    }
  }
  return NULL;
}

// Where a literal lives, and what it is.
typedef enum { UNKNOWN, NUMBER, NOT_A_NUMBER } kind_t;
typedef struct {
  kind_t kind;
  double value;
  const validator_string_t *node;   // the literal's node id
  const validator_string_t *input;  // and input name
} literal_t;

// The value of input `name` of `n`, following links to primitive nodes.
static literal_t resolve(const graph_t *g, const node_t *n, const char *name, int depth) {
  literal_t out = {UNKNOWN, 0, NULL, NULL};
  const validator_string_t *input_name = NULL;
  const value_t *v = find_input(n, name, &input_name);
  if (v == NULL || depth > MAX_DEPTH) return out;
  out.node = &n->id;
  out.input = input_name;
  switch (v->tag) {
    case EXPORTS_COMFYUME_PLUGIN_VALIDATION_INPUT_VALUE_INT:
      out.kind = NUMBER;
      out.value = (double)v->val.int_;
      return out;
    case EXPORTS_COMFYUME_PLUGIN_VALIDATION_INPUT_VALUE_FLOAT:
      out.kind = isfinite(v->val.float_) ? NUMBER : NOT_A_NUMBER;
      out.value = v->val.float_;
      return out;
    case EXPORTS_COMFYUME_PLUGIN_VALIDATION_INPUT_VALUE_STR:
    case EXPORTS_COMFYUME_PLUGIN_VALIDATION_INPUT_VALUE_BOOLEAN:
      out.kind = NOT_A_NUMBER;
      return out;
    case EXPORTS_COMFYUME_PLUGIN_VALIDATION_INPUT_VALUE_LINK: {
      const node_t *source = find_node(g, &v->val.link.node);
      if (source != NULL && v->val.link.slot == 0 &&
          (str_eq(&source->class_type, "PrimitiveInt") ||
           str_eq(&source->class_type, "PrimitiveFloat")))
        return resolve(g, source, "value", depth + 1);
      out.kind = UNKNOWN;  // computed elsewhere (e.g. from an image), or dangling
      return out;
    }
    default:
      out.kind = UNKNOWN;
      return out;
  }
}

// A small message builder (no stdio).
typedef struct {
  char text[160];
  size_t len;
} msg_t;

static void msg_str(msg_t *m, const char *s) {
  while (*s && m->len + 1 < sizeof m->text) m->text[m->len++] = *s++;
  m->text[m->len] = 0;
}

static void msg_int(msg_t *m, double v) {
  char digits[24];
  int n = 0;
  if (v < 0) {
    msg_str(m, "-");
    v = -v;
  }
  if (v > 1e18) {
    msg_str(m, "a huge number");
    return;
  }
  unsigned long long u = (unsigned long long)v;
  do {
    digits[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u && n < 23);
  while (n) {
    char c[2] = {digits[--n], 0};
    msg_str(m, c);
  }
}

// A number as written: whole, or with two decimals.
static void msg_num(msg_t *m, double v) {
  msg_int(m, trunc(v));
  double frac = fabs(v - trunc(v));
  if (frac > 0) {
    msg_str(m, ".");
    int hundredths = (int)round(frac * 100);
    if (hundredths < 10) msg_str(m, "0");
    msg_int(m, hundredths > 99 ? 99 : hundredths);
  }
}

typedef struct {
  problem_t items[MAX_PROBLEMS];
  size_t len;
} problems_t;

static void copy_string(validator_string_t *to, const validator_string_t *from) {
  to->len = from->len;
  to->ptr = (uint8_t *)malloc(from->len ? from->len : 1);
  if (from->len) memcpy(to->ptr, from->ptr, from->len);
}

// Adds a problem at the literal's site, once per site.
static void report(problems_t *p, const literal_t *at, uint8_t type, const char *message) {
  for (size_t i = 0; i < p->len; i++)
    if (same(&p->items[i].node_id, at->node) && same(&p->items[i].input_name.val, at->input))
      return;
  if (p->len == MAX_PROBLEMS) return;
  problem_t *item = &p->items[p->len++];
  copy_string(&item->node_id, at->node);
  item->input_name.is_some = true;
  copy_string(&item->input_name.val, at->input);
  item->type = type;
  validator_string_dup(&item->message, message);
}

// Checks one width or height; returns the side for the cost (0 if unknown).
static double check_side(problems_t *p, const graph_t *g, const node_t *n, const char *axis) {
  literal_t lit = resolve(g, n, axis, 0);
  msg_t m = {{0}, 0};
  if (lit.kind == UNKNOWN) return 0;
  msg_str(&m, axis);
  if (lit.kind == NOT_A_NUMBER) {
    msg_str(&m, " must be a number of pixels");
    report(p, &lit, EXPORTS_COMFYUME_PLUGIN_VALIDATION_PROBLEM_TYPE_INVALID_INPUT_TYPE, m.text);
    return 0;
  }
  double v = lit.value;
  msg_str(&m, " ");
  msg_num(&m, v);
  if (v < MIN_SIDE) {
    msg_str(&m, " is below the smallest FLUX.2 size, ");
    msg_int(&m, MIN_SIDE);
    report(p, &lit, EXPORTS_COMFYUME_PLUGIN_VALIDATION_PROBLEM_TYPE_VALUE_SMALLER_THAN_MIN, m.text);
  } else if (v > MAX_SIDE) {
    msg_str(&m, " is above the largest FLUX.2 size, ");
    msg_int(&m, MAX_SIDE);
    report(p, &lit, EXPORTS_COMFYUME_PLUGIN_VALIDATION_PROBLEM_TYPE_VALUE_BIGGER_THAN_MAX, m.text);
  } else if (v != floor(v) || fmod(v, SIDE_STEP) != 0) {
    double down = floor(v / SIDE_STEP) * SIDE_STEP;
    msg_str(&m, " is not a multiple of 16 (try ");
    msg_int(&m, down);
    msg_str(&m, " or ");
    msg_int(&m, down + SIDE_STEP);
    msg_str(&m, ")");
    report(p, &lit, EXPORTS_COMFYUME_PLUGIN_VALIDATION_PROBLEM_TYPE_VALUE_NOT_VALID, m.text);
  } else {
    return v;
  }
  return 0;
}

// A positive whole number from a literal input, or `fallback`.
static double count(const graph_t *g, const node_t *n, const char *name, double fallback,
                    double max) {
  if (n == NULL) return fallback;
  literal_t lit = resolve(g, n, name, 0);
  if (lit.kind != NUMBER || lit.value < 1 || lit.value > max) return fallback;
  return floor(lit.value);
}

void exports_comfyume_plugin_validation_validate(graph_t *graph, verdict_t *ret) {
  const node_t *latent = NULL, *scheduler = NULL;
  for (size_t i = 0; i < graph->len; i++) {
    const node_t *n = &graph->ptr[i];
    if (latent == NULL && str_eq(&n->class_type, "EmptyFlux2LatentImage")) latent = n;
    if (scheduler == NULL && str_eq(&n->class_type, "Flux2Scheduler")) scheduler = n;
  }
  if (latent == NULL && scheduler == NULL) {
    ret->tag = EXPORTS_COMFYUME_PLUGIN_VALIDATION_VERDICT_NOT_APPLICABLE;
    exports_comfyume_plugin_validation_list_node_free(graph);
    return;
  }

  problems_t *p = calloc(1, sizeof *p);
  double width = 0, height = 0;
  for (size_t i = 0; i < graph->len; i++) {
    const node_t *n = &graph->ptr[i];
    if (!str_eq(&n->class_type, "EmptyFlux2LatentImage") &&
        !str_eq(&n->class_type, "Flux2Scheduler"))
      continue;
    double w = check_side(p, graph, n, "width");
    double h = check_side(p, graph, n, "height");
    if (width == 0) width = w;
    if (height == 0) height = h;
  }

  if (p->len > 0) {
    ret->tag = EXPORTS_COMFYUME_PLUGIN_VALIDATION_VERDICT_REJECTED;
    ret->val.rejected.len = p->len;
    ret->val.rejected.ptr = malloc(p->len * sizeof(problem_t));
    memcpy(ret->val.rejected.ptr, p->items, p->len * sizeof(problem_t));
  } else {
    if (width == 0) width = DEFAULT_SIDE;
    if (height == 0) height = DEFAULT_SIDE;
    double images = count(graph, latent, "batch_size", 1, 64);
    double steps = count(graph, scheduler, "steps", 20, 1000);
    ret->tag = EXPORTS_COMFYUME_PLUGIN_VALIDATION_VERDICT_ACCEPTED;
    validator_string_dup(&ret->val.accepted.workflow_kind, "flux2-klein");
    ret->val.accepted.cost.frames = (uint32_t)images;
    ret->val.accepted.cost.width = (uint32_t)width;
    ret->val.accepted.cost.height = (uint32_t)height;
    ret->val.accepted.cost.steps = (uint32_t)steps;
    ret->val.accepted.cost.gpu_seconds = 2.0 + 0.4 * (width * height * images / 1e6) * steps;
  }
  free(p);
  exports_comfyume_plugin_validation_list_node_free(graph);
}

void exports_validator_describe(validator_plugin_info_t *ret) {
  validator_string_dup(&ret->name, "c-flux2-size");
  validator_string_dup(&ret->version, "0.1.0");
  ret->kind = COMFYUME_PLUGIN_TYPES_PLUGIN_KIND_VALIDATOR;
  validator_string_dup(&ret->summary,
                       "FLUX.2 Klein sizes: multiples of 16 from 256 to 2048 (C).");
}
