namespace Qed.Tests.PowerCut;

/// <summary>What a crash state holds that a repair has to deal with.</summary>
/// <param name="Reclaimable">Leaked clusters at the end of the file, which a repair truncates.</param>
internal readonly record struct InputFeatures(bool NeedCheck, bool Corrupt, bool PartialTail, long Leaks, long Reclaimable, long Allocated)
{
    public override string ToString() =>
        $"{(NeedCheck ? "need-check" : "clean bit")}, {(Corrupt ? "corrupt" : "no corruption")}, {(PartialTail ? "non-zero partial last cluster" : "no partial last cluster with data")}, {Leaks} leaked clusters ({Reclaimable} at the end), {Allocated} allocated";
}
