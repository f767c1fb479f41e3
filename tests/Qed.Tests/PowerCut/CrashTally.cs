namespace Qed.Tests.PowerCut;

/// <summary>Counts of what the checked crash states showed.</summary>
internal sealed class CrashTally
{
    private readonly object _sync = new();

    public int Checked { get; private set; }

    public Dictionary<string, int> ByKind { get; } = new(StringComparer.Ordinal);

    public int NeedCheck { get; private set; }

    public int QemuCorrupt { get; private set; }

    public int Repaired { get; private set; }

    public int UnreadableReadOnly { get; private set; }

    public int PartialTail { get; private set; }

    public int ConfirmedByQemu { get; private set; }

    public int RefusalsConfirmedByQemu { get; private set; }

    public void Add(string kind, StateOutcome outcome)
    {
        lock (_sync)
        {
            Checked++;
            ByKind[kind] = ByKind.GetValueOrDefault(kind) + 1;
            NeedCheck += outcome.NeedCheck ? 1 : 0;
            QemuCorrupt += outcome.QemuCorrupt ? 1 : 0;
            Repaired += outcome.Repaired ? 1 : 0;
            UnreadableReadOnly += outcome.UnreadableReadOnly ? 1 : 0;
            PartialTail += outcome.PartialTail ? 1 : 0;
            ConfirmedByQemu += outcome.ConfirmedByQemu ? 1 : 0;
            RefusalsConfirmedByQemu += outcome.RefusalConfirmedByQemu ? 1 : 0;
        }
    }

    public void Add(CrashTally other)
    {
        lock (_sync)
        {
            Checked += other.Checked;
            foreach (var (kind, n) in other.ByKind)
            {
                ByKind[kind] = ByKind.GetValueOrDefault(kind) + n;
            }
            NeedCheck += other.NeedCheck;
            QemuCorrupt += other.QemuCorrupt;
            Repaired += other.Repaired;
            UnreadableReadOnly += other.UnreadableReadOnly;
            PartialTail += other.PartialTail;
            ConfirmedByQemu += other.ConfirmedByQemu;
            RefusalsConfirmedByQemu += other.RefusalsConfirmedByQemu;
        }
    }

    public override string ToString() =>
        $"{Checked} crash states checked ({string.Join(", ", ByKind.OrderBy(k => k.Key, StringComparer.Ordinal).Select(k => $"{k.Value} {k.Key}"))}); "
        + $"{NeedCheck} with need-check set, {QemuCorrupt} of them corrupt before the repair, {UnreadableReadOnly} with reads a read-only open must refuse, "
        + $"{PartialTail} ending in a partial cluster, {Repaired} changed by the writable open, {ConfirmedByQemu} confirmed by qemu-img convert, {RefusalsConfirmedByQemu} read-only refusals confirmed by qemu-io";
}
