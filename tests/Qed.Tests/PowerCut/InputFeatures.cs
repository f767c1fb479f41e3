namespace Qed.Tests.PowerCut;

/// <summary>What a crash state holds that a repair has to deal with.</summary>
internal readonly record struct InputFeatures(bool NeedCheck, bool Corrupt, bool PartialTail, long Leaks, long Allocated)
{
    public override string ToString() =>
        $"{(NeedCheck ? "need-check" : "clean bit")}, {(Corrupt ? "corrupt" : "no corruption")}, {(PartialTail ? "non-zero partial last cluster" : "no partial last cluster with data")}, {Leaks} leaked clusters, {Allocated} allocated";
}
