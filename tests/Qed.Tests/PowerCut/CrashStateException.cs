namespace Qed.Tests.PowerCut;

/// <summary>A crash state broke a rule; the message says which.</summary>
internal sealed class CrashStateException(string message) : Exception(message);
