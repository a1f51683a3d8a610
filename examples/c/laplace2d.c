/* A user's C program: the 5-point Laplacian on an m x m grid, KSP from options.

   Nothing here knows about pddattn; the Python preconditioner is reached
   through PETSc options (PCPYTHON), as PETSc's own tutorials (ksp ex2) can:

     make -C examples/c
     PYTHONPATH=$PWD:$PWD/.venv/lib/python3.11/site-packages mpirun -n 2 examples/c/laplace2d \
         -python .venv/bin/python -m 40 -ksp_type cg -ksp_norm_type unpreconditioned \
         -pc_type python -pc_python_type pddattn.petsc.DDAttentionPC -pddattn_subdomains 8

   -python EXE makes PETSc start an embedded interpreter (PetscPythonInitialize)
   and register the python PC type; PYTHONPATH lets it find pddattn and torch. */
#include <petscksp.h>

int main(int argc, char **argv)
{
  Mat A;
  Vec x, b, r;
  KSP ksp;
  PetscInt m = 32, row, start, end, its;
  PetscReal rnorm, bnorm;
  KSPConvergedReason reason;

  PetscCall(PetscInitialize(&argc, &argv, NULL, "5-point Laplacian, KSP from options\n"));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-m", &m, NULL));
  PetscCall(MatCreateAIJ(PETSC_COMM_WORLD, PETSC_DECIDE, PETSC_DECIDE, m * m, m * m, 5, NULL, 4, NULL, &A));
  PetscCall(MatGetOwnershipRange(A, &start, &end));
  for (row = start; row < end; row++) {
    PetscInt i = row % m, j = row / m, cols[5], k = 0;
    PetscScalar vals[5];
    if (j > 0) { cols[k] = row - m; vals[k++] = -1.0; }
    if (i > 0) { cols[k] = row - 1; vals[k++] = -1.0; }
    cols[k] = row; vals[k++] = 4.0;
    if (i < m - 1) { cols[k] = row + 1; vals[k++] = -1.0; }
    if (j < m - 1) { cols[k] = row + m; vals[k++] = -1.0; }
    PetscCall(MatSetValues(A, 1, &row, k, cols, vals, INSERT_VALUES));
  }
  PetscCall(MatAssemblyBegin(A, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(A, MAT_FINAL_ASSEMBLY));
  PetscCall(MatCreateVecs(A, &x, &b));
  PetscCall(VecDuplicate(b, &r));
  PetscCall(VecSet(b, 1.0));
  PetscCall(KSPCreate(PETSC_COMM_WORLD, &ksp));
  PetscCall(KSPSetOperators(ksp, A, A));
  PetscCall(KSPSetTolerances(ksp, 1e-8, PETSC_DEFAULT, PETSC_DEFAULT, PETSC_DEFAULT));
  PetscCall(KSPSetFromOptions(ksp));
  PetscCall(KSPSolve(ksp, b, x));
  PetscCall(MatMult(A, x, r));
  PetscCall(VecAYPX(r, -1.0, b));
  PetscCall(VecNorm(r, NORM_2, &rnorm));
  PetscCall(VecNorm(b, NORM_2, &bnorm));
  PetscCall(KSPGetIterationNumber(ksp, &its));
  PetscCall(KSPGetConvergedReason(ksp, &reason));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "reason %d, %" PetscInt_FMT " iterations, true relative residual %.3e\n",
                        (int)reason, its, (double)(rnorm / bnorm)));
  PetscCall(KSPDestroy(&ksp));
  PetscCall(VecDestroy(&x));
  PetscCall(VecDestroy(&b));
  PetscCall(VecDestroy(&r));
  PetscCall(MatDestroy(&A));
  PetscCall(PetscFinalize());
  return 0;
}
