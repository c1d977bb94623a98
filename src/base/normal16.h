/* normal16.h — PyTorch's block of 16 Box-Muller normals, for generator.c only.
 *
 * d[0..16) holds uniforms in [0, 1) on entry and normals on return: d[j] and d[j+8]
 * (j < 8) become r cos(theta) and r sin(theta) with r = sqrt(-2 log(1 - d[j])),
 * theta = 2 pi d[j+8], each times std plus mean. */
#ifndef DDP_BASE_NORMAL16_H
#define DDP_BASE_NORMAL16_H

void normal16_f32(float d[16], float mean, float std);
void normal16_f64(double d[16], double mean, double std);

#endif
