namespace Qed.Tests.Concurrency;

/// <summary>One write of a concurrency test: its id, guest range, and the logical times just before it was issued and just after it completed.</summary>
internal readonly record struct TimedWrite(int Id, long Offset, int Length, long Issued, long Completed)
{
    public long End => Offset + Length;

    public override string ToString() => $"write {Id} [0x{Offset:x}, 0x{End:x}) issued at {Issued}, completed at {Completed}";
}
