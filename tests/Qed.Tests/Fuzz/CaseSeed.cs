namespace Qed.Tests.Fuzz;

/// <summary>The seed of one fuzz case, derived from the run's seed and the case number by a fixed function, so that a run replays exactly on any machine and any core count.</summary>
internal static class CaseSeed
{
    /// <summary>SplitMix64's finaliser over (run seed, case number): neighbouring cases get unrelated seeds.</summary>
    /// <remarks>Fixed arithmetic on purpose: <c>HashCode.Combine</c> is randomised per process and would make a printed seed useless.</remarks>
    public static int For(int runSeed, int caseNumber)
    {
        ulong z = ((ulong)(uint)runSeed << 32 | (uint)caseNumber) + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (int)(z & int.MaxValue);
    }
}
