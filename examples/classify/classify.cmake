# examples/classify: train examples/mlp.nnd, emit it as C with the trained
# weights embedded, and build a program that classifies the test images
# with no nndc at run time.  Not part of `all`:
#   ninja -C build classify_example
# NNDC_FASHION_DIR holds the gzipped IDX files (Debian's dataset-fashion-mnist).
set(NNDC_FASHION_DIR "/usr/share/datasets/fashion-mnist" CACHE PATH
    "directory with the Fashion-MNIST *-ubyte.gz IDX files")
set(CLASSIFY_DIR ${CMAKE_BINARY_DIR}/classify-example)
set(CLASSIFY_EPOCHS 1 CACHE STRING "epochs of training for the classify example")
add_custom_command(
  OUTPUT ${CLASSIFY_DIR}/mlp.safetensors
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CLASSIFY_DIR}
  COMMAND nndc train ${CMAKE_SOURCE_DIR}/examples/mlp.nnd
          --data x=${NNDC_FASHION_DIR}/train-images-idx3-ubyte.gz
          --data y=${NNDC_FASHION_DIR}/train-labels-idx1-ubyte.gz
          --epochs ${CLASSIFY_EPOCHS} --save ${CLASSIFY_DIR}/mlp.safetensors
  DEPENDS nndc ${CMAKE_SOURCE_DIR}/examples/mlp.nnd
  COMMENT "Training examples/mlp.nnd on Fashion-MNIST")
add_custom_command(
  OUTPUT ${CLASSIFY_DIR}/gen/mlp.c ${CLASSIFY_DIR}/gen/mlp.h
  COMMAND nndc emit-c ${CMAKE_SOURCE_DIR}/examples/mlp.nnd -o ${CLASSIFY_DIR}/gen
          --weights ${CLASSIFY_DIR}/mlp.safetensors -D N=1
  DEPENDS nndc ${CLASSIFY_DIR}/mlp.safetensors
  COMMENT "Emitting mlp.c with the trained weights")
add_executable(classify EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/examples/classify/classify.c ${CLASSIFY_DIR}/gen/mlp.c)
set_target_properties(classify PROPERTIES C_STANDARD 99 C_EXTENSIONS OFF)
target_include_directories(classify PRIVATE ${CLASSIFY_DIR}/gen)
target_compile_options(classify PRIVATE -Wall -Wextra -pedantic)
target_link_libraries(classify PRIVATE m)
# classify.c reads plain IDX files: the test set, decompressed.
add_custom_command(
  OUTPUT ${CLASSIFY_DIR}/t10k-images-idx3-ubyte ${CLASSIFY_DIR}/t10k-labels-idx1-ubyte
  COMMAND gzip -dc ${NNDC_FASHION_DIR}/t10k-images-idx3-ubyte.gz > ${CLASSIFY_DIR}/t10k-images-idx3-ubyte
  COMMAND gzip -dc ${NNDC_FASHION_DIR}/t10k-labels-idx1-ubyte.gz > ${CLASSIFY_DIR}/t10k-labels-idx1-ubyte
  DEPENDS ${CLASSIFY_DIR}/mlp.safetensors
  COMMENT "Decompressing the Fashion-MNIST test set")
add_custom_target(classify_example
  COMMAND classify ${CLASSIFY_DIR}/t10k-images-idx3-ubyte ${CLASSIFY_DIR}/t10k-labels-idx1-ubyte
  DEPENDS classify ${CLASSIFY_DIR}/t10k-images-idx3-ubyte ${CLASSIFY_DIR}/t10k-labels-idx1-ubyte
  COMMENT "Classifying the Fashion-MNIST test images with the emitted C")
