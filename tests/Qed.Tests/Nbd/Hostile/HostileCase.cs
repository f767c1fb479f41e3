namespace Qed.Tests.Nbd.Hostile;

/// <summary>
/// One hostile input: <see cref="Probe"/> does it against a target, appending each step's result to the list it is
/// given (a drop or a timeout ends the list with "dropped (...)" / "silent (...)"); <see cref="Accept"/> says whether
/// that outcome is what our server must answer (NBD.md 6), described in <see cref="Expected"/>.
/// </summary>
internal sealed record HostileCase(string Name, string Expected, Action<HostileTarget, List<string>> Probe, Func<string, bool> Accept)
{
    /// <summary>Cases that close the connection themselves or answer only what they record: any outcome, as long as the server survives it (the normal client after it is the check).</summary>
    public static bool Survives(string outcome) => !outcome.StartsWith("protocol error", StringComparison.Ordinal);

    /// <summary>The server dropped the connection (it cannot be resynchronised, or it must not continue).</summary>
    public static bool Dropped(string outcome) => outcome.StartsWith("dropped", StringComparison.Ordinal);

    /// <summary>Exactly one of <paramref name="answers"/>, then the connection still served a READ.</summary>
    public static Func<string, bool> ThenAlive(params string[] answers) => outcome => answers.Any(answer => outcome == answer + "; alive");

    /// <summary>The outcome is exactly <paramref name="expected"/>.</summary>
    public static Func<string, bool> Exactly(string expected) => outcome => outcome == expected;
}
